"""Sources on real files: the bundled Common Voice sample, archives built from it, a Hub-style
parquet dataset holding its real clip bytes, and manifests of your own recordings."""

from __future__ import annotations

import csv
import io
import os
import shutil
import tarfile
from itertools import count as counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from utils.sources import (
    Example,
    SourceError,
    combine,
    extract_archive,
    open_source,
    subsample,
)

CORPUS = Path(__file__).resolve().parents[1] / "data" / "cv-corpus-sample"
SV = CORPUS / "sv-SE"


def tsv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def copy_locale(dst_root: Path, locale: str = "sv-SE") -> Path:
    """A writable copy of one sample locale (TSVs and clips) under dst_root/<locale>."""
    dst = dst_root / locale
    shutil.copytree(CORPUS / locale, dst)
    return dst


def make_archive(
    locale_dir: Path, archive: Path, release: str = "cv-corpus-17.0-2024-03-15"
) -> Path:
    """An archive laid out like Mozilla Data Collective's: <release>/<locale>/..."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(locale_dir, arcname=f"{release}/{locale_dir.name}")
    return archive


# ------------------------------------------------------------------------------ Common Voice


def test_common_voice_locale_dir_matches_tsvs():
    source = open_source(SV)
    assert source.name == "cv-sv-SE"
    assert source.splits() == ["train", "dev", "test"]
    for split in source.splits():
        rows = tsv_rows(SV / f"{split}.tsv")
        examples = list(source.examples(split))
        assert [e.id for e in examples] == [Path(r["path"]).stem for r in rows]
        assert [e.text for e in examples] == [r["sentence"] for r in rows]
        assert all(e.split == split and e.source == "cv-sv-SE" for e in examples)
        assert all(Path(e.audio).is_file() for e in examples)
    # lazy and deterministic: a fresh iterator gives the same sequence
    assert list(source.examples("test")) == list(source.examples("test"))
    assert not isinstance(source.examples("train"), list)


def test_common_voice_release_root_with_locale():
    source = open_source(CORPUS, locale="it")
    assert source.name == "cv-it"
    assert {e.id.split("_")[2] for e in source.examples("dev")} == {"it"}
    with pytest.raises(SourceError, match=r"several locales \['en', 'it', 'sv-SE'\]; pass locale"):
        open_source(CORPUS)
    with pytest.raises(SourceError, match=r"no Common Voice locale 'fr'.*found: \['en', 'it'"):
        open_source(CORPUS, locale="fr")


def test_common_voice_quotes_and_bad_tsvs(tmp_path):
    loc = copy_locale(tmp_path)
    # Common Voice sentences contain bare quotes; with CSV quoting on they would swallow the tabs.
    rows = tsv_rows(loc / "train.tsv")
    rows[0]["sentence"] = '"Hej," sa hon. "Kom in!'
    with open(loc / "train.tsv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(
            f, fieldnames=list(rows[0]), delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None
        )
        writer.writeheader()
        writer.writerows(rows)
    first = next(open_source(loc).examples("train"))
    assert first.text == '"Hej," sa hon. "Kom in!'

    # a missing clip file does not stop anything: the example passes, the pipeline reports it
    missing = loc / "clips" / rows[1]["path"]
    missing.unlink()
    examples = list(open_source(loc).examples("train"))
    assert len(examples) == len(rows) and examples[1].audio == str(missing.resolve())

    (loc / "dev.tsv").unlink()
    with pytest.raises(SourceError, match=r"split 'dev': file not found: .*sv-SE/dev\.tsv"):
        open_source(loc)
    assert open_source(loc, splits=["train", "test"]).splits() == ["train", "test"]

    text = (loc / "test.tsv").read_text(encoding="utf-8").replace("\tsentence\t", "\ttext\t", 1)
    (loc / "test.tsv").write_text(text, encoding="utf-8")
    with pytest.raises(SourceError, match=r"test\.tsv: missing column 'sentence'"):
        open_source(loc, splits="train,test")


def test_not_a_source(tmp_path):
    with pytest.raises(SourceError, match="source not found: .*nowhere"):
        open_source(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="empty: not a Common Voice release"):
        open_source(tmp_path / "empty")
    with pytest.raises(SourceError, match=r"unknown option\(s\) \['colour'\]"):
        open_source(SV, colour="blue")


# ---------------------------------------------------------------------------------- archives


def test_common_voice_archive_extracts_once(tmp_path):
    archive = make_archive(SV, tmp_path / "cv-corpus-17.0-2024-03-15-sv-SE.tar.gz")
    source = open_source(archive)
    extracted = tmp_path / "cv-corpus-17.0-2024-03-15-sv-SE.tar.gz.extracted"
    assert source.name == "cv-sv-SE"
    assert Path(source.locale_dir) == (extracted / "cv-corpus-17.0-2024-03-15" / "sv-SE").resolve()
    from_dir = open_source(SV)
    for split in from_dir.splits():
        a, b = list(source.examples(split)), list(from_dir.examples(split))
        assert [(e.id, e.text) for e in a] == [(e.id, e.text) for e in b]
        assert all(
            Path(e.audio).read_bytes() == Path(f.audio).read_bytes()
            for e, f in zip(a, b, strict=True)
        )
    assert source.describe()["origin"] == str(archive)

    # a rerun reuses the extraction: a file we drop into it survives, nothing is rewritten
    sentinel = extracted / "sentinel"
    sentinel.write_text("kept")
    clip = next(source.examples("train")).audio
    inode = os.stat(clip).st_ino  # a new extraction would make new files
    again = open_source(archive, locale="sv-SE")
    assert sentinel.exists() and os.stat(clip).st_ino == inode
    assert list(again.examples("dev")) == list(source.examples("dev"))

    # an archive replaced by another (new size/mtime) is extracted again
    os.utime(archive, ns=(0, 0))
    open_source(archive)
    assert not sentinel.exists() and (extracted / ".extracted.json").is_file()
    # a killed extraction's hidden temp folder is cleaned up by the next one
    (tmp_path / ".cv-corpus-17.0-2024-03-15-sv-SE.tar.gz.extracted.killed").mkdir()
    os.utime(archive, ns=(1, 1))
    open_source(archive)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    # an explicit cache dir
    cache = tmp_path / "cache" / "cv17"
    locale_dir = open_source(archive, cache_dir=cache).locale_dir
    assert locale_dir == (cache / "cv-corpus-17.0-2024-03-15" / "sv-SE").resolve()
    # a folder holding other things is never emptied to make room
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(
        SourceError, match=r"cache_dir .*mine is not empty and is not an extraction"
    ):
        open_source(archive, cache_dir=tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def _tar_with(path: Path, name: str) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("cv-corpus-17.0/sv-SE/train.tsv")
        ok.size = 4
        tar.addfile(ok, io.BytesIO(b"a\tb\n"))
        bad = tarfile.TarInfo(name)
        bad.size = 5
        tar.addfile(bad, io.BytesIO(b"evil\n"))
    return path


@pytest.mark.parametrize("member", ["cv-corpus-17.0/../../evil", "/tmp/evil-abs"])
def test_archive_refuses_unsafe_members(tmp_path, member):
    work = tmp_path / "downloads"
    work.mkdir()
    archive = _tar_with(work / "bad.tar.gz", member)
    with pytest.raises(SourceError, match=r"bad\.tar\.gz: refusing unsafe member '.*evil"):
        open_source(archive)
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil-abs").exists()
    assert sorted(p.name for p in work.iterdir()) == ["bad.tar.gz"]  # no cache, no temp dir


def test_archive_link_escaping_is_refused(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tar:
        link = tarfile.TarInfo("cv/sv-SE/clips/x.mp3")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(SourceError, match=r"link\.tar: refusing unsafe member"):
        extract_archive(archive)


def test_corrupt_archive_is_named(tmp_path):
    archive = make_archive(SV, tmp_path / "cv.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(SourceError, match=r"cv\.tar\.gz: cannot extract"):
        open_source(archive)


# ----------------------------------------------------------------------------------- Hub


def make_hub_dataset(root: Path, text_column: str = "sentence", n: int = 3) -> Path:
    """A local dataset folder laid out like fixie-ai/common_voice_17_0 on the Hub.

    One config per locale folder (declared in the README's YAML, as on the Hub), parquet files per
    split, the audio column stored as an `Audio` feature (struct of encoded bytes and path) in the
    parquet schema metadata, exactly how `datasets` writes Hub parquet. The bytes are the sample's
    real mp3 clips.
    """
    from datasets import Audio, Features, Value

    features = Features(
        {
            "client_id": Value("string"),
            "path": Value("string"),
            "audio": Audio(sampling_rate=48000),
            text_column: Value("string"),
            "up_votes": Value("int64"),
            "locale": Value("string"),
        }
    )
    (root / "sv-SE").mkdir(parents=True)
    for split, hub_split in (("train", "train"), ("dev", "validation"), ("test", "test")):
        rows = tsv_rows(SV / f"{split}.tsv")[:n]
        table = pa.table(
            {
                "client_id": [r["client_id"] for r in rows],
                "path": [r["path"] for r in rows],
                "audio": [
                    {"bytes": (SV / "clips" / r["path"]).read_bytes(), "path": r["path"]}
                    for r in rows
                ],
                text_column: [r["sentence"] for r in rows],
                "up_votes": [int(r["up_votes"]) for r in rows],
                "locale": [r["locale"] for r in rows],
            },
            schema=features.arrow_schema,
        )
        pq.write_table(table, root / "sv-SE" / f"{hub_split}-00000-of-00001.parquet")
    (root / "README.md").write_text(
        "---\nconfigs:\n- config_name: sv-SE\n  data_files:\n"
        + "".join(
            f"  - split: {s}\n    path: sv-SE/{s}-*\n" for s in ("train", "validation", "test")
        )
        + "---\n"
    )
    return root


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory):
    return make_hub_dataset(tmp_path_factory.mktemp("hub") / "common_voice_17_0")


def test_hub_parquet_dataset_streams_bytes(hub_dir):
    source = open_source(f"hf:{hub_dir}", config="sv-SE")
    assert source.name == "hf-common_voice_17_0-sv-SE"
    assert source.splits() == ["train", "dev", "test"]  # "validation" became "dev"
    for split in source.splits():
        rows = tsv_rows(SV / f"{split}.tsv")[:3]
        examples = list(source.examples(split))
        assert [e.id for e in examples] == [Path(r["path"]).stem for r in rows]
        assert [e.text for e in examples] == [r["sentence"] for r in rows]
        assert [e.audio for e in examples] == [
            (SV / "clips" / r["path"]).read_bytes() for r in rows
        ]
    # undecoded bytes that the workers can decode
    audio, sr = sf.read(io.BytesIO(next(source.examples("test")).audio))
    assert sr == 48000 and len(audio) > 4800


def test_hub_not_streaming_and_options(hub_dir, tmp_path):
    source = open_source(
        f"hf:{hub_dir}?config=sv-SE&streaming=false&splits=test",
        cache_dir=str(tmp_path / "hf-cache"),
        name="cv17-sv",
        id_column="client_id",
    )
    assert source.name == "cv17-sv" and source.splits() == ["test"]
    rows = tsv_rows(SV / "test.tsv")[:3]
    assert [e.id for e in source.examples("test")] == [r["client_id"] for r in rows]
    assert (tmp_path / "hf-cache").is_dir()


def test_hub_fleurs_like_text_column(tmp_path):
    root = make_hub_dataset(tmp_path / "fleurs", text_column="transcription", n=2)
    with pytest.raises(
        SourceError, match=r"no column 'sentence' \(text_column\); columns: .*transcription"
    ):
        open_source(f"hf:{root}", config="sv-SE")
    source = open_source(f"hf:{root}", config="sv-SE", text_column="transcription")
    assert len(list(source.examples("dev"))) == 2
    # split names of the user's choosing; only train/dev/test are picked by default
    spec = f"hf:{root}?config=sv-SE&text_column=transcription&split_names=test:heldout"
    assert open_source(spec).splits() == ["train", "dev"]
    assert open_source(spec, splits="heldout").splits() == ["heldout"]
    with pytest.raises(SourceError, match=r"hf:.*fleurs .*config='xx'"):
        open_source(f"hf:{root}", config="xx")
    with pytest.raises(SourceError, match=r"hf:.*/nowhere: local dataset folder not found"):
        open_source(f"hf:{tmp_path / 'nowhere'}")
    with pytest.raises(SourceError, match=r"no split\(s\) \['other'\]"):
        open_source(f"hf:{root}", config="sv-SE", splits=["other"], text_column="transcription")


# ----------------------------------------------------------------------------- manifests


def write_csv(path: Path, header: list[str], rows: list[list[str]], delimiter: str = ",") -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def own_data(tmp_path):
    """Own recordings in a folder tree, as someone would bring them."""
    (tmp_path / "audio" / "book1").mkdir(parents=True)
    clips = sorted((SV / "clips").glob("*.mp3"))[:6]
    for i, clip in enumerate(clips):
        shutil.copy(clip, tmp_path / "audio" / "book1" / f"page{i}.mp3")
    return tmp_path


def test_manifest_relative_paths_default_train(own_data):
    rows = [[f"audio/book1/page{i}.mp3", f"Sida {i}, kapitel ett."] for i in range(6)]
    rows[2][1] = ""  # an empty transcript passes through; the pipeline skips it with a reason
    manifest = write_csv(own_data / "my recordings.csv", ["path", "transcript"], rows)
    source = open_source(manifest)
    assert source.name == "my-recordings" and source.splits() == ["train"]
    examples = list(source.examples("train"))
    assert [e.id for e in examples] == [r[0] for r in rows]
    assert examples[0].text == "Sida 0, kapitel ett."  # the quoted comma survived
    assert examples[2].text == ""
    assert all(Path(e.audio).is_file() and Path(e.audio).is_absolute() for e in examples)


def test_manifest_split_fractions_and_split_column(own_data, tmp_path):
    rows = [[f"audio/book1/page{i % 6}.mp3", f"id{i}", "text"] for i in range(400)]
    manifest = write_csv(own_data / "many.csv", ["audio", "id", "text"], rows)
    source = open_source(manifest, dev_fraction=0.1, test_fraction=0.2)
    sizes = {s: sum(1 for _ in source.examples(s)) for s in source.splits()}
    assert source.splits() == ["train", "dev", "test"]
    assert sum(sizes.values()) == 400
    assert 20 <= sizes["dev"] <= 60 and 50 <= sizes["test"] <= 110
    # stable: the same ids land in the same split on every open
    again = open_source(manifest, dev_fraction=0.1, test_fraction=0.2)
    assert [e.id for e in again.examples("test")] == [e.id for e in source.examples("test")]
    with pytest.raises(SourceError, match=r"test_fraction=1\.5 must be in \[0, 1\)"):
        open_source(manifest, test_fraction=1.5)
    with pytest.raises(SourceError, match=r"dev_fraction='a lot' must be a number"):
        open_source(f"{manifest}?dev_fraction=a lot")

    # a TSV as pandas writes it (quoted fields) and one with bare quotes, read with quoting=False
    tsv = write_csv(
        own_data / "split.tsv",
        ["file", "sentence", "split"],
        [
            ["audio/book1/page0.mp3", '"Hej", sa han', "train"],
            ["audio/book1/page1.mp3", "b", "validation"],
        ],
        delimiter="\t",
    )
    source = open_source(tsv)
    assert source.splits() == ["train", "dev"]
    with pytest.raises(SourceError, match=r"split\.tsv has a 'split' column: dev_fraction"):
        open_source(tsv, dev_fraction=0.1)
    assert next(source.examples("train")).text == '"Hej", sa han'
    assert [e.id for e in source.examples("dev")] == ["audio/book1/page1.mp3"]
    raw = own_data / "raw.tsv"
    raw.write_text('path\ttext\naudio/book1/page0.mp3\t"Hej", sa han\n', encoding="utf-8")
    assert next(open_source(f"{raw}?quoting=false").examples("train")).text == '"Hej", sa han'


def test_common_voice_tsv_as_manifest(tmp_path):
    # a filtered Common Voice TSV in a locale dir: paths resolve under clips/, quoting off
    loc = copy_locale(tmp_path)
    rows = tsv_rows(loc / "validated.tsv")
    rows[0]["sentence"] = '"Hej," sa hon.'
    with open(loc / "mine.tsv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(
            f, list(rows[0]), delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None
        )
        writer.writeheader()
        writer.writerows(rows[:4])
    examples = list(open_source(loc / "mine.tsv", name="cv-mine").examples("train"))
    assert examples[0].text == '"Hej," sa hon.'
    assert [e.id for e in examples] == [Path(r["path"]).stem for r in rows[:4]]
    assert [Path(e.audio) for e in examples] == [
        (loc / "clips" / r["path"]).resolve() for r in rows[:4]
    ]


def test_manifest_bad_inputs(own_data):
    bad = write_csv(own_data / "bad.csv", ["filename", "sentence"], [["a.mp3", "x"]])
    with pytest.raises(
        SourceError,
        match=r"bad\.csv: missing audio path column .*columns: \['filename', 'sentence'\]",
    ):
        open_source(bad)
    bad = write_csv(own_data / "bad2.csv", ["path", "words"], [["a.mp3", "x"]])
    with pytest.raises(SourceError, match=r"bad2\.csv: missing transcript column"):
        open_source(bad)
    bad = write_csv(own_data / "bad3.csv", ["path", "text"], [["a.mp3", "x"], ["", "y"]])
    with pytest.raises(SourceError, match=r"bad3\.csv, row 3: empty audio path"):
        open_source(bad)
    bad = write_csv(
        own_data / "bad4.csv", ["path", "text"], [["a.mp3", "x"], ["b.mp3", "y"], ["a.mp3", "z"]]
    )
    with pytest.raises(SourceError, match=r"bad4\.csv, row 4: id 'a\.mp3' repeats row 2"):
        open_source(bad)


# ----------------------------------------------------------------------------- subsample


def synthetic(n: int, source: str = "s") -> list[Example]:
    return [Example(f"clip{i}", "train", "t", f"/x/{i}.mp3", source) for i in range(n)]


def test_subsample_is_deterministic_and_proportional():
    examples = synthetic(20000)
    kept = [e.id for e in subsample(examples, fraction=0.1, seed=3)]
    assert kept == [e.id for e in subsample(iter(examples), fraction=0.1, seed=3)]
    assert 1800 <= len(kept) <= 2200
    other = {e.id for e in subsample(examples, fraction=0.1, seed=4)}
    assert len(other & set(kept)) < 400  # another seed picks another tenth
    # a clip's fate depends only on itself: a shuffled or extended stream keeps the same clips
    assert {
        e.id for e in subsample(examples[::-1] + synthetic(5, "t"), fraction=0.1, seed=3)
    } >= set(kept)
    assert [e.id for e in subsample(examples, count=5)] == [f"clip{i}" for i in range(5)]
    assert [e.id for e in subsample(examples, fraction=0.1, count=5, seed=3)] == kept[:5]
    assert list(subsample(examples[:10], fraction=1.0)) == examples[:10]


def test_subsample_streams():
    pulled = []
    endless = (pulled.append(i) or Example(f"c{i}", "train", "t", b"", "s") for i in counter())
    kept = list(subsample(endless, fraction=0.5, count=100))
    assert len(kept) == 100 and kept[-1].id == f"c{pulled[-1]}"  # nothing read past the last kept


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fraction": 0}, r"fraction=0 must be in \(0, 1\]"),
        ({"fraction": 1.5}, r"fraction=1\.5 must be in \(0, 1\]"),
        ({"fraction": -0.1}, r"fraction=-0\.1"),
        ({"fraction": "10%"}, r"fraction='10%' must be a number"),
        ({"count": 0}, r"count=0 must be an integer >= 1"),
        ({"count": 2.5}, r"count=2\.5 must be an integer"),
    ],
)
def test_subsample_rejects_bad_parameters(kwargs, message):
    with pytest.raises(SourceError, match=message):
        subsample(synthetic(3), **kwargs)


# ------------------------------------------------------------------------------- combine


def test_combine_keeps_sources_apart(hub_dir, own_data):
    manifest = write_csv(
        own_data / "audiobook.csv",
        ["path", "text"],
        [[f"audio/book1/page{i}.mp3", "x"] for i in range(6)],
    )
    sources = combine(
        [
            SV,
            {"spec": str(CORPUS), "locale": "it"},
            f"{CORPUS}?locale=en&splits=test",
            {"spec": f"hf:{hub_dir}", "config": "sv-SE", "name": "cv17-hub"},
            manifest,
        ]
    )
    assert [s.name for s in sources] == ["cv-sv-SE", "cv-it", "cv-en", "cv17-hub", "audiobook"]
    assert [s.splits() for s in sources] == [
        ["train", "dev", "test"],
        ["train", "dev", "test"],
        ["test"],
        ["train", "dev", "test"],
        ["train"],
    ]
    for source in sources:
        for split in source.splits():
            assert {(e.source, e.split) for e in source.examples(split)} == {(source.name, split)}
    # a shared locale (the pipeline's) picks within a release root, never overrides a locale dir
    shared = combine(
        [SV, CORPUS / "it", CORPUS, manifest, f"hf:{hub_dir}?config=sv-SE"], locale="en"
    )
    assert [s.name for s in shared] == [
        "cv-sv-SE",
        "cv-it",
        "cv-en",
        "audiobook",
        "hf-common_voice_17_0-sv-SE",
    ]
    with pytest.raises(SourceError, match=r"no Common Voice locale 'fr'"):
        combine([{"spec": str(CORPUS / "it"), "locale": "fr"}])
    # the same locale twice (e.g. two releases) must be told apart by name
    with pytest.raises(SourceError, match=r"two sources named 'cv-sv-SE'.*pass name="):
        combine([SV, {"spec": str(CORPUS), "locale": "sv-SE"}])
    assert [
        s.name
        for s in combine([SV, {"spec": str(CORPUS), "locale": "sv-SE", "name": "cv16-sv-SE"}])
    ] == [
        "cv-sv-SE",
        "cv16-sv-SE",
    ]
    with pytest.raises(SourceError, match=r"source name 'my data' .*pass name="):
        open_source(SV, name="my data")
