"""The feature pipeline end to end: exact features, skipped inputs, resume after a real kill."""

import csv
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from transformers import WhisperFeatureExtractor

from utils.audio import SAMPLE_RATE, load_audio
from utils.features import N_FRAMES, expand_log_mel
from utils.featurize import (
    FeatureConfig,
    default_store_path,
    run_feature_pipeline,
)
from utils.featurize.__main__ import main
from utils.store import MANIFEST, FeatureStore

from .killing import kill_when

TOLERANCE = 2e-3  # float16 rounding of log-Mel values in [-1.5, 2.5]: at most ~1e-3
LOCALES = ("sv-SE", "it", "en")


def _wav(path: Path, audio: np.ndarray) -> str:
    sf.write(path, audio, SAMPLE_RATE, subtype="FLOAT")
    return path.name


@pytest.fixture(scope="module")
def edge_corpus(tmp_path_factory, sample_corpus) -> Path:
    """A manifest of edge-case clips (good and bad) in a temporary folder."""
    root = tmp_path_factory.mktemp("edge-corpus")
    clips = sorted((sample_corpus / "sv-SE" / "clips").glob("*.mp3"))
    speech = np.concatenate([load_audio(c) for c in clips[:14]])
    assert len(speech) > 31 * SAMPLE_RATE
    shutil.copy(clips[0], root / "short.mp3")
    (root / "corrupt.mp3").write_bytes(np.random.default_rng(0).bytes(4096))
    rows = [
        ("short.mp3", "En kort mening.", "train"),
        (_wav(root / "long.wav", speech[: int(29.5 * SAMPLE_RATE)]), "Lång.", "train"),
        (_wav(root / "silent.wav", np.zeros(2 * SAMPLE_RATE, np.float32)), "Tyst.", "train"),
        (_wav(root / "very_short.wav", speech[8000:8160]), "Kort.", "train"),
        (_wav(root / "one_sample.wav", speech[9000:9001]), "Ett.", "test"),
        ("missing.mp3", "Finns inte.", "train"),
        ("corrupt.mp3", "Trasig.", "train"),
        (_wav(root / "no_text.wav", speech[:SAMPLE_RATE]), "", "train"),
        (_wav(root / "over_30s.wav", speech[: 31 * SAMPLE_RATE]), "För lång.", "test"),
        (_wav(root / "long_text.wav", speech[:SAMPLE_RATE]), "ord " * 500, "test"),
    ]
    with open(root / "edge.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "sentence", "split"])
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def edge_cfg(edge_corpus, tiny_whisper, tmp_path_factory) -> FeatureConfig:
    return FeatureConfig(
        source=str(edge_corpus / "edge.csv"),
        store=str(tmp_path_factory.mktemp("edge-store") / "store"),
        model=str(tiny_whisper),
        language="swedish",
        shard_size=3,
        workers=2,
    )


@pytest.fixture(scope="module")
def edge_store(edge_cfg) -> dict:
    """The edge corpus run through the real process pool; returns the manifest."""
    return run_feature_pipeline(edge_cfg)


def test_features_equal_the_whisper_feature_extractor(edge_store, edge_cfg, edge_corpus):
    extractor = WhisperFeatureExtractor.from_pretrained(edge_cfg.model)
    ds = FeatureStore(edge_cfg.store).dataset(["train", "test"])
    by_id = {ds[i]["id"]: ds[i] for i in range(len(ds))}
    assert sorted(by_id) == [
        "long.wav",
        "one_sample.wav",
        "short.mp3",
        "silent.wav",
        "very_short.wav",
    ]
    for clip_id, item in by_id.items():
        audio = load_audio(edge_corpus / clip_id)
        reference = extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features[
            0
        ]
        rebuilt = expand_log_mel(item["features"], item["pad_value"])
        assert rebuilt.shape == reference.shape == (80, N_FRAMES)
        assert np.abs(rebuilt - reference).max() < TOLERANCE, clip_id
    assert by_id["long.wav"]["features"].shape[1] == 2952  # 29.5 s: all but the last 0.48 s
    assert by_id["short.mp3"]["features"].shape[1] < 400  # a 3 s clip keeps a tenth
    assert by_id["silent.wav"]["pad_value"] == -1.5  # log10(1e-10) mapped: the silent floor


def test_bad_inputs_are_skipped_with_their_reason(edge_store, edge_corpus):
    assert edge_store["splits"] == {"train": 4, "test": 1}
    assert edge_store["skipped"] == {
        "empty_transcript": 1,
        "labels_too_long": 1,
        "too_long": 1,
        "unreadable": 2,
    }
    clips = {c["id"]: c for c in edge_store["skipped_clips"]}
    assert set(clips) == {
        "missing.mp3",
        "corrupt.mp3",
        "no_text.wav",
        "over_30s.wav",
        "long_text.wav",
    }
    missing, corrupt = clips["missing.mp3"], clips["corrupt.mp3"]
    assert missing["reason"] == "unreadable" and missing["split"] == "train"
    assert (
        str(edge_corpus / "missing.mp3") in missing["detail"]
        and "no such file" in missing["detail"]
    )
    assert (
        str(edge_corpus / "corrupt.mp3") in corrupt["detail"]
        and "cannot decode" in corrupt["detail"]
    )
    assert clips["no_text.wav"]["reason"] == "empty_transcript"
    assert "31.00 s is over the 30 s limit" in clips["over_30s.wav"]["detail"]
    assert clips["long_text.wav"]["reason"] == "labels_too_long"
    assert "over the decoder's 448" in clips["long_text.wav"]["detail"]
    assert clips["over_30s.wav"]["source"] == "edge"


def test_identical_rerun_does_nothing(edge_store, edge_cfg, capsys):
    shards = sorted(Path(edge_cfg.store).rglob("*.parquet"))
    stamps = [p.stat().st_mtime_ns for p in shards]
    assert run_feature_pipeline(edge_cfg) == edge_store
    assert "nothing to do" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in shards] == stamps


def test_corrupted_shard_is_named_and_extracted_again(edge_store, edge_cfg, tmp_path, capsys):
    store = shutil.copytree(edge_cfg.store, tmp_path / "store")
    shard = store / "shards/edge/train-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x55
    shard.write_bytes(bytes(data))
    cfg = dataclasses.replace(edge_cfg, store=str(store), workers=0)
    assert run_feature_pipeline(cfg) == edge_store  # same checksums: extraction is deterministic
    out = capsys.readouterr().out
    assert f"{shard}: corrupted (sha256" in out and "extracting it again" in out
    assert "3 of 4 shards were done already" in out  # only the damaged one was extracted again


def test_other_settings_on_the_same_store_fail_naming_both(edge_store, edge_cfg):
    cfg = dataclasses.replace(edge_cfg, language="italian")
    with pytest.raises(ValueError, match="language='sv'.*language='it'"):
        run_feature_pipeline(cfg)


def test_subsample_by_count_and_default_store_path(
    sample_corpus, tiny_whisper, tmp_path, monkeypatch
):
    cfg = FeatureConfig(
        source=str(sample_corpus / "it"),
        store=str(tmp_path / "it"),
        model=str(tiny_whisper),
        language="italian",
        count=2,
        splits="train,test",
        workers=0,
    )
    manifest = run_feature_pipeline(cfg)
    assert manifest["sources"] == {"cv-it": {"train": 2, "test": 2}}
    assert manifest["settings"]["label_prefix"][1] == 50274  # <|it|>
    monkeypatch.delenv("WHISPER_FEATURES_ROOT")  # the default root outside the tests
    assert default_store_path("data/cv-corpus-sample/sv-SE", "openai/whisper-small") == Path(
        "runs/features/sv-SE-whisper-small"
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("fraction", 0.0, r"FeatureConfig.fraction=0.0: must be in \(0, 1\]"),
        ("count", 0, "FeatureConfig.count=0: must be an integer"),
        ("shard_size", 0, "FeatureConfig.shard_size=0"),
        ("max_duration", 31.0, r"FeatureConfig.max_duration=31.0: must be in \(0, 30\]"),
        ("task", "summarize", "FeatureConfig.task='summarize'"),
        ("workers", -1, "FeatureConfig.workers=-1"),
    ],
)
def test_bad_config_names_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        FeatureConfig(**{field: value})


def test_cli_reports_a_missing_source(tmp_path, tiny_whisper, capsys):
    rc = main(
        [
            "--source",
            str(tmp_path / "nowhere"),
            "--store",
            str(tmp_path / "s"),
            "--model",
            str(tiny_whisper),
        ]
    )
    assert rc == 2
    assert f"source not found: {tmp_path / 'nowhere'}" in capsys.readouterr().err


def test_resume_after_a_real_kill_gives_the_uninterrupted_store(
    sample_corpus, tiny_whisper, tmp_path
):
    sources = [str(sample_corpus / locale) for locale in LOCALES]
    common = {"model": str(tiny_whisper), "language": "swedish", "shard_size": 2, "chunksize": 1}
    reference = run_feature_pipeline(
        FeatureConfig(source=tuple(sources), store=str(tmp_path / "ref"), workers=0, **common)
    )

    store = tmp_path / "killed"
    cmd = [sys.executable, "-m", "utils.featurize", "--store", str(store), "--workers", "2"]
    cmd += [
        "--model",
        common["model"],
        "--language",
        "swedish",
        "--shard-size",
        "2",
        "--chunksize",
        "1",
    ]
    for source in sources:
        cmd += ["--source", source]
    repo = Path(__file__).resolve().parent.parent
    left = kill_when(cmd, repo, lambda: any(store.glob("shards/*/*.json")), whole_group=False)
    done = len(list(store.glob("shards/*/*.json")))
    assert not (store / MANIFEST).exists() and 0 < done < len(reference["shards"])
    assert left == []  # the orphaned pool (forkserver and workers) noticed and exited by itself

    rerun = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "shards were done already" in rerun.stdout
    resumed = json.loads((store / MANIFEST).read_text())
    assert resumed["splits"] == reference["splits"] == {"train": 144, "dev": 24, "test": 36}
    assert resumed["sources"] == reference["sources"]
    assert resumed["shards"] == reference["shards"]  # same files, rows and sha256
    assert resumed == reference
    ids = FeatureStore(store).column("id")
    assert len(ids) == len(set(ids)) == 204
    assert ids == FeatureStore(tmp_path / "ref").column("id")
    assert not list(store.rglob("*.tmp"))
