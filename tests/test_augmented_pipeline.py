"""Augmentation and combined sources inside the real feature pipeline (issue 5).

Small stores of the sample corpus with the tiny Whisper: a few clips per split and small shards, so
that every test runs the real pool, shards and manifest in seconds.
"""

import csv
import hashlib
import json
import subprocess
import sys
from itertools import islice
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from utils.augment import parse_augment
from utils.featurize import (
    FeatureConfig,
    default_store_path,
    run_feature_pipeline,
    summarize,
)
from utils.featurize.__main__ import main
from utils.store import MANIFEST, FeatureStore

from .killing import kill_when

REPO = Path(__file__).resolve().parent.parent
COUNT = 4  # clips per split and source: 4 train originals + their copies, 4 dev, 4 test
# Every technique fires on every copy, two copies per training clip: each copy is audibly changed.
ALWAYS = {"copies": 2, "p": 1.0}
N_FRAMES_SLACK = 3  # frames: stretch rounding plus the STFT's edge frames


def _config(sample_corpus, tiny_whisper, store, **overrides) -> FeatureConfig:
    params = {
        "source": str(sample_corpus / "sv-SE"),
        "store": str(store),
        "model": str(tiny_whisper),
        "language": "swedish",
        "count": COUNT,
        "shard_size": 3,
        "workers": 0,  # in this process: a handful of clips is faster than starting a pool
        "augment": ALWAYS,
        **overrides,
    }
    return FeatureConfig(**params)


def _rows(store) -> list[dict]:
    """Every row of a store, shard by shard, with its shard's file and a digest of its features."""
    rows = []
    for shard in FeatureStore(store).manifest["shards"]:
        table = pq.read_table(Path(store) / shard["file"]).to_pylist()
        for row in table:
            row["shard"] = shard["file"]
            row["digest"] = hashlib.sha256(row.pop("features")).hexdigest()
            rows.append(row)
    return rows


def _fingerprint(store) -> dict:
    """What makes two stores identical: ids, feature bytes and the manifest's shard checksums."""
    manifest = FeatureStore(store).manifest
    return {
        "rows": [(row["id"], row["digest"], row["augment"]) for row in _rows(store)],
        "shards": [(s["file"], s["rows"], s["sha256"]) for s in manifest["shards"]],
    }


@pytest.fixture(scope="module")
def augmented_store(sample_corpus, tiny_whisper, tmp_path_factory) -> Path:
    """sv-SE, 4 clips per split, two copies of each training clip, built by a real 2-worker pool."""
    store = tmp_path_factory.mktemp("augmented") / "store"
    run_feature_pipeline(_config(sample_corpus, tiny_whisper, store, workers=2))
    return store


def test_copies_change_the_features_and_stay_in_train(augmented_store):
    manifest = FeatureStore(augmented_store).manifest
    assert manifest["splits"] == {"train": COUNT * 3, "dev": COUNT, "test": COUNT}
    assert manifest["sources"] == {"cv-sv-SE": manifest["splits"]}
    assert manifest["settings"]["augment"] == parse_augment(ALWAYS, seed=0).to_dict()
    json.dumps(manifest["settings"])  # the settings are plain JSON

    rows = _rows(augmented_store)
    originals = {row["id"]: row for row in rows if not row["augment"]}
    copies = [row for row in rows if row["augment"]]
    assert len(copies) == 2 * COUNT
    for row in rows:
        if row["split"] != "train":  # no augmented row reaches dev or test
            assert row["augment"] == "" and "#aug" not in row["id"], row["id"]
    for copy in copies:
        base, _, k = copy["id"].partition("#aug")
        original = originals[base]
        assert copy["split"] == "train" and k in ("1", "2")
        assert copy["shard"] == original["shard"]  # resume granularity: the original's shard
        assert copy["text"] == original["text"] and copy["labels"] == original["labels"]
        applied = json.loads(copy["augment"])
        assert set(applied) >= {"noise", "pitch", "speed"}, applied
        assert copy["digest"] != original["digest"]  # the features changed
        # Speed is a time stretch: the copy lasts 1/factor as long, in samples and in frames.
        factor = applied["speed"]
        assert copy["duration"] == pytest.approx(original["duration"] / factor, rel=2e-3)
        assert abs(copy["n_frames"] - original["n_frames"] / factor) <= N_FRAMES_SLACK
    assert len({json.loads(c["augment"])["speed"] for c in copies}) == len(copies)


def test_same_seed_gives_the_identical_store(
    augmented_store, sample_corpus, tiny_whisper, tmp_path
):
    # in this process instead of a 2-worker pool: the store does not depend on the worker count
    again = run_feature_pipeline(_config(sample_corpus, tiny_whisper, tmp_path / "again"))
    assert _fingerprint(tmp_path / "again") == _fingerprint(augmented_store)
    assert again == FeatureStore(augmented_store).manifest  # settings, counts, shard checksums


def test_another_seed_gives_other_copies(augmented_store, sample_corpus, tiny_whisper, tmp_path):
    run_feature_pipeline(_config(sample_corpus, tiny_whisper, tmp_path / "seed1", seed=1))
    ours, theirs = _fingerprint(augmented_store)["rows"], _fingerprint(tmp_path / "seed1")["rows"]
    assert [row[0] for row in ours] == [row[0] for row in theirs]  # same clips (count ignores seed)
    for (row_id, digest, applied), (_, other_digest, other_applied) in zip(
        ours, theirs, strict=True
    ):
        if "#aug" in row_id:
            assert digest != other_digest and applied != other_applied, row_id
        else:
            assert digest == other_digest, row_id  # originals are untouched by the seed


def test_other_augment_settings_on_the_same_store_are_refused(
    augmented_store, sample_corpus, tiny_whisper
):
    for augment in ("noise", None):
        cfg = _config(sample_corpus, tiny_whisper, augmented_store, augment=augment)
        with pytest.raises(ValueError, match=r"this store was built with augment=\{.*'copies': 2"):
            run_feature_pipeline(cfg)


@pytest.mark.parametrize(
    ("augment", "message"),
    [
        ({"speed_range": [0, 1.5]}, r"FeatureConfig\.augment\.speed_range: factors must be > 0"),
        ({"p_noise": -0.1}, r"FeatureConfig\.augment\.p_noise: a probability must be in \[0, 1\]"),
        ({"p": -0.5}, r"FeatureConfig\.augment\.p_noise"),
        ('{"speed_range": "0.5"}', r"FeatureConfig\.augment\.speed_range.* must be a \(min, max\)"),
        ("noise,reverb", r"FeatureConfig\.augment\.techniques: unknown \['reverb'\]"),
    ],
)
def test_bad_augment_is_refused_naming_the_parameter(augment, message):
    with pytest.raises(ValueError, match=message):
        FeatureConfig(augment=augment)


def test_augment_spellings_and_limits(monkeypatch):
    for off in (None, False, "off", "", {"copies": 0}):
        assert FeatureConfig(augment=off).augment is None
    on = FeatureConfig(augment="on", seed=3)
    assert on.augment == parse_augment({}, seed=3).to_dict()  # the pipeline's seed by default
    assert FeatureConfig(augment=on.augment).augment == on.augment  # the stored dict round-trips
    assert FeatureConfig(augment="speed,noise").augment["techniques"] == ["speed", "noise"]
    # slowed copies are held to the pipeline's own clip limit
    assert FeatureConfig(augment="on", max_duration=20).augment["max_duration"] == 20
    monkeypatch.delenv("WHISPER_FEATURES_ROOT")  # the default root outside the tests
    assert default_store_path("cv/sv-SE", "m", augment="on") == Path(
        "runs/features/sv-SE-m-augmented"
    )
    assert default_store_path("cv/sv-SE", "m", augment="off") == Path("runs/features/sv-SE-m")


def test_cli_refuses_a_bad_augment_naming_the_parameter(sample_corpus, tmp_path, capsys):
    cmd = [sys.executable, "-m", "utils.featurize", "--source", str(sample_corpus / "it")]
    cmd += ["--store", str(tmp_path / "s"), "--augment", '{"speed_range": [0, 1.5]}']
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "augment.speed_range: factors must be > 0, got (0.0, 1.5)" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "s").exists()
    # the same parser in this process (no second interpreter start): a negative probability
    rc = main(
        ["--source", str(sample_corpus / "it"), "--store", str(tmp_path / "s")]
        + ["--augment", '{"p_speed": -1}']
    )
    assert rc != 0 and "augment.p_speed: a probability must be in [0, 1]" in capsys.readouterr().err


def test_cli_has_augment_and_several_sources(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "--augment" in text and '"noise,speed"' in text and "repeat for several" in text


def test_resume_with_augmentation_after_a_real_kill(sample_corpus, tiny_whisper, tmp_path):
    sources = [str(sample_corpus / "sv-SE"), str(sample_corpus / "it")]
    augment = '{"copies": 1, "p": 1.0}'
    reference = run_feature_pipeline(
        _config(
            sample_corpus,
            tiny_whisper,
            tmp_path / "ref",
            source=tuple(sources),
            shard_size=2,
            augment=augment,
        )
    )
    store = tmp_path / "killed"
    cmd = [sys.executable, "-m", "utils.featurize", "--store", str(store), "--workers", "2"]
    cmd += ["--model", str(tiny_whisper), "--language", "swedish", "--count", str(COUNT)]
    cmd += ["--shard-size", "2", "--chunksize", "1", "--augment", augment]
    for source in sources:
        cmd += ["--source", source]
    kill_when(cmd, REPO, lambda: any(store.glob("shards/*/*.json")), whole_group=False)
    done = len(list(store.glob("shards/*/*.json")))
    assert not (store / MANIFEST).exists() and 0 < done < len(reference["shards"])

    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "shards were done already" in rerun.stdout
    assert json.loads((store / MANIFEST).read_text()) == reference
    assert _fingerprint(store) == _fingerprint(tmp_path / "ref")
    assert reference["splits"] == {"train": 2 * 2 * COUNT, "dev": 2 * COUNT, "test": 2 * COUNT}


def _own_manifest(sample_corpus, folder: Path) -> Path:
    """A CSV of 'own recordings': four en train clips and two en test clips, by absolute path."""
    clips = sample_corpus / "en"
    rows = []
    for split, n in (("train", 4), ("test", 2)):
        with open(clips / f"{split}.tsv", encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            for row in islice(reader, n):
                path = clips / "clips" / row["path"]
                rows.append((path.stem, str(path), row["sentence"], split))
    manifest = folder / "own-en.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "path", "sentence", "split"])
        writer.writerows(rows)
    return manifest


def test_combined_sources_keep_their_test_sets(sample_corpus, tiny_whisper, tmp_path):
    own = _own_manifest(sample_corpus, tmp_path)
    # its paths point into the sample corpus: outside the manifest's folder, so say so
    own_spec = {"spec": str(own), "audio_root": str(sample_corpus)}
    sources = (str(sample_corpus / "sv-SE"), str(sample_corpus / "it"), own_spec)
    cfg = _config(sample_corpus, tiny_whisper, tmp_path / "combined", source=sources, augment=None)
    manifest = run_feature_pipeline(cfg)
    per_split = {"train": COUNT, "dev": COUNT, "test": COUNT}
    assert manifest["sources"] == {
        "cv-sv-SE": per_split,
        "cv-it": per_split,
        "own-en": {"train": 4, "test": 2},
    }
    assert manifest["splits"] == {"train": 3 * COUNT, "dev": 2 * COUNT, "test": 2 * COUNT + 2}
    assert "source own-en: train 4, test 2" in summarize(manifest)

    store = FeatureStore(tmp_path / "combined")
    expected_test = {}  # source -> ids of its test split, as the source lists them
    for source, locale in (("cv-sv-SE", "sv-SE"), ("cv-it", "it"), ("own-en", "en")):
        with open(sample_corpus / locale / "test.tsv", encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            n = manifest["sources"][source]["test"]
            expected_test[source] = [Path(row["path"]).stem for row in islice(reader, n)]
    for source, ids in expected_test.items():
        test = store.dataset(["test"], sources=[source])
        items = [test[i] for i in range(len(test))]
        assert [item["id"] for item in items] == ids, source
        assert {item["source"] for item in items} == {source}
    everything = store.dataset(["test"])
    assert sorted(
        (everything[i]["source"], everything[i]["id"]) for i in range(len(everything))
    ) == sorted((source, clip) for source, ids in expected_test.items() for clip in ids)
    training = store.dataset()  # the training splits: train + dev
    train_keys = {(training[i]["source"], training[i]["id"]) for i in range(len(training))}
    train_texts = {training[i]["text"] for i in range(len(training))}
    assert len(training) == manifest["splits"]["train"] + manifest["splits"]["dev"]
    for i in range(len(everything)):
        item = everything[i]
        assert (item["source"], item["id"]) not in train_keys
        assert item["text"] not in train_texts  # not even the same sentence under another id


@pytest.mark.slow
def test_notebook_01_combines_sources_with_augmentation(
    repo_root, sample_corpus, tiny_whisper, tmp_path
):
    import nbformat
    import papermill as pm

    store = tmp_path / "store"
    executed = tmp_path / "01_executed.ipynb"
    pm.execute_notebook(
        str(repo_root / "01_feature_pipeline.ipynb"),
        str(executed),
        parameters={
            "source": [str(sample_corpus / "sv-SE"), str(sample_corpus / "it")],
            # two locales: the store's one label language must be said (a multilingual model)
            "language": "swedish",
            "model": str(tiny_whisper),
            "store": str(store),
            "count": 2,
            "augment": {"copies": 1, "p": 1.0},
            "workers": 0,
        },
        cwd=str(repo_root),
        kernel_name="python3",
        progress_bar=False,
    )
    manifest = FeatureStore(store).manifest
    per_source = {"train": 4, "dev": 2, "test": 2}  # 2 train clips + their 2 copies
    assert manifest["sources"] == {"cv-sv-SE": per_source, "cv-it": per_source}
    assert manifest["settings"]["augment"]["copies"] == 1
    text = "\n".join(
        output.get("text", "")
        for cell in nbformat.read(executed, as_version=4).cells
        for output in cell.get("outputs", [])
    )
    assert "source cv-sv-SE: train 4, dev 2, test 2" in text
    assert "source cv-it: train 4, dev 2, test 2" in text
    assert "augmented copies: 4 of 8 train rows" in text
