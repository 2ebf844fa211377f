"""Data tests for the bundled Common Voice-style sample corpus (data/cv-corpus-sample)."""

from __future__ import annotations

import csv
import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS = REPO_ROOT / "data" / "cv-corpus-sample"
LOCALES = ("sv-SE", "it", "en")
SPLITS = ("train", "dev", "test")
# English has a second held-out set whose words never occur in train or dev (real-weight tests).
EXTRA_SPLITS = {"en": ("unseen",)}
CV17_COLUMNS = [
    "client_id",
    "path",
    "sentence_id",
    "sentence",
    "sentence_domain",
    "up_votes",
    "down_votes",
    "age",
    "gender",
    "accents",
    "variant",
    "locale",
    "segment",
]
# mp3 frames are 1152 samples (24 ms at 48 kHz); 50 ms allows for encoder/decoder padding.
DURATION_TOLERANCE_MS = 50


def read_tsv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a Common Voice TSV (unquoted, tab-separated)."""
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


@pytest.fixture(scope="module", params=LOCALES)
def locale_dir(request) -> Path:
    return CORPUS / request.param


def test_split_tsvs_have_cv17_columns(locale_dir):
    for name in (*SPLITS, "validated"):
        header, rows = read_tsv(locale_dir / f"{name}.tsv")
        assert header == CV17_COLUMNS, f"{locale_dir.name}/{name}.tsv"
        assert rows, f"{locale_dir.name}/{name}.tsv is empty"
        for row in rows:
            assert row["locale"] == locale_dir.name
            assert len(row["client_id"]) == 128
            assert None not in row, f"extra fields in {locale_dir.name}/{name}.tsv: {row}"


def test_clips_decode_at_48k_mono_and_match_durations(locale_dir):
    header, durations = read_tsv(locale_dir / "clip_durations.tsv")
    assert header == ["clip", "duration[ms]"]
    expected = {r["clip"]: int(r["duration[ms]"]) for r in durations}
    _, validated = read_tsv(locale_dir / "validated.tsv")
    extra = [
        r
        for s in EXTRA_SPLITS.get(locale_dir.name, ())
        for r in read_tsv(locale_dir / f"{s}.tsv")[1]
    ]
    assert {r["path"] for r in validated + extra} == set(expected)
    for row in validated + extra:
        path = locale_dir / "clips" / row["path"]
        assert path.is_file(), path
        audio, sr = sf.read(path, dtype="float32")
        assert sr == 48000, path
        assert audio.ndim == 1, path
        ms = len(audio) / sr * 1000
        assert abs(ms - expected[row["path"]]) <= DURATION_TOLERANCE_MS, path
        assert 1500 - DURATION_TOLERANCE_MS <= ms <= 6000, path
        assert abs(audio).max() > 0.01, f"{path} is silent"


def test_validated_is_union_of_splits(locale_dir):
    split_rows = [r for s in SPLITS for r in read_tsv(locale_dir / f"{s}.tsv")[1]]
    _, validated = read_tsv(locale_dir / "validated.tsv")
    key = lambda r: tuple(r[c] for c in CV17_COLUMNS)  # noqa: E731
    assert sorted(map(key, validated)) == sorted(map(key, split_rows))
    assert len({r["path"] for r in validated}) == len(validated), "duplicate clip paths"


def test_test_sentences_disjoint_from_train_and_dev(locale_dir):
    seen = {r["sentence"] for s in ("train", "dev") for r in read_tsv(locale_dir / f"{s}.tsv")[1]}
    test = {r["sentence"] for r in read_tsv(locale_dir / "test.tsv")[1]}
    assert test and not test & seen


def test_unseen_set_shares_no_word_with_train_and_dev():
    def words(rows):
        return {w for r in rows for w in re.findall(r"[\w']+", r["sentence"].lower())}

    trained = words(r for s in ("train", "dev") for r in read_tsv(CORPUS / "en" / f"{s}.tsv")[1])
    _, unseen = read_tsv(CORPUS / "en" / "unseen.tsv")
    assert len(unseen) >= 20 and not words(unseen) & trained
    assert len(trained) > 300  # the held-out test split shares this vocabulary


def test_several_speakers_per_locale(locale_dir):
    _, validated = read_tsv(locale_dir / "validated.tsv")
    assert len({r["client_id"] for r in validated}) >= 3


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("ffmpeg")), reason="needs espeak-ng + ffmpeg"
)
def test_generator_reproduces_committed_tsvs(tmp_path, monkeypatch):
    """Regenerating one locale gives the committed TSVs (the corpus is not hand-edited)."""
    spec = importlib.util.spec_from_file_location(
        "make_sample_corpus", REPO_ROOT / "scripts" / "make_sample_corpus.py"
    )
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class body runs.
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    counts = module.build_locale(tmp_path, "en", jobs=2)
    assert counts == {"train": 96, "dev": 12, "test": 24, "unseen": 24}
    for name in (*SPLITS, "unseen", "validated"):
        new = (tmp_path / "en" / f"{name}.tsv").read_text(encoding="utf-8")
        assert new == (CORPUS / "en" / f"{name}.tsv").read_text(encoding="utf-8"), name
    _, new_durations = read_tsv(tmp_path / "en" / "clip_durations.tsv")
    _, old_durations = read_tsv(CORPUS / "en" / "clip_durations.tsv")
    # Durations may shift by a frame across ffmpeg/LAME versions; names and order may not.
    assert [r["clip"] for r in new_durations] == [r["clip"] for r in old_durations]
    for new, old in zip(new_durations, old_durations, strict=True):
        assert abs(int(new["duration[ms]"]) - int(old["duration[ms]"])) <= DURATION_TOLERANCE_MS
