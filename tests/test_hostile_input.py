"""Input from strangers: hand-edited store manifests, archives made of links, pages where an
archive should be, two runs on one store, Common Voice tables that point outside their release,
and random bytes into every parser (hypothesis). Each gets a clear error naming the file, row or
field, and nothing outside the target folder is touched."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from utils.errors import PipelineError, SourceError, StoreError
from utils.sources import open_source
from utils.sources.manifest import ManifestSource
from utils.sources.tables import read_rows
from utils.store import MANIFEST, FeatureStore, fetch_store, pack_store
from utils.store.reader import check_manifest

REPO = Path(__file__).resolve().parent.parent
SV = REPO / "data" / "cv-corpus-sample" / "sv-SE"


@pytest.fixture
def store_copy(sample_store, tmp_path) -> Path:
    return Path(shutil.copytree(sample_store, tmp_path / "store"))


def edit_manifest(store: Path, change) -> None:
    manifest = json.loads((store / MANIFEST).read_text())
    change(manifest)
    (store / MANIFEST).write_text(json.dumps(manifest))


# --- the store's manifest, edited by hand -------------------------------------------------------


def test_inflated_counts_are_refused(store_copy):
    edit_manifest(store_copy, lambda m: m["splits"].update(train=m["splits"]["train"] + 5))
    with pytest.raises(StoreError, match=r"manifest\.json: the manifest counts .* its shards hold"):
        FeatureStore(store_copy)


def test_a_dropped_shard_is_found_by_verify(store_copy):
    def drop(m):
        shard = m["shards"].pop(0)
        m["splits"][shard["split"]] -= shard["rows"]
        m["sources"][shard["source"]][shard["split"]] -= shard["rows"]

    edit_manifest(store_copy, drop)
    store = FeatureStore(store_copy)  # counts agree with themselves: only the disk can tell
    with pytest.raises(
        StoreError, match=r"train-00000\.parquet: finished on disk but not in the manifest"
    ):
        store.verify()


@pytest.mark.parametrize(
    "file", ["../../../etc/passwd", "/etc/passwd", "shards/../../outside.parquet"]
)
def test_shard_files_outside_the_store_are_refused(store_copy, file):
    edit_manifest(store_copy, lambda m: m["shards"][0].update(file=file))
    with pytest.raises(StoreError, match="shard file"):
        FeatureStore(store_copy)


def test_a_crafted_split_name_never_becomes_a_path(store_copy, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    edit_manifest(store_copy, lambda m: m["shards"][0].update(split="../../victim.txt"))
    with pytest.raises(StoreError, match=r"manifest\.json: split name '\.\./\.\./victim\.txt'"):
        FeatureStore(store_copy)
    assert victim.read_text() == "keep me"


# --- archives made of links (the CVE-2025-4517 pattern: no '..' and no absolute name) ------------


def link_chain_archive(path: Path) -> Path:
    """Symbolic links that each look harmless (relative, no '..') but together lead outside,
    and a file written through them, as in the tarfile filter bypasses of 2025."""
    with tarfile.open(path, "w:gz") as tar:
        for name, target in (("cv/a", "b"), ("cv/b", "c"), ("cv/c", "/tmp")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        data = b"written outside\n"
        info = tarfile.TarInfo("cv/a/escaped-by-links.txt")
        info.size = len(data)
        tar.addfile(info, __import__("io").BytesIO(data))
        hard = tarfile.TarInfo("cv/hard")
        hard.type, hard.linkname = tarfile.LNKTYPE, "cv/a"
        tar.addfile(hard)
    return path


def test_link_chains_are_refused_in_a_common_voice_archive(tmp_path):
    archive = link_chain_archive(tmp_path / "cv-corpus-evil.tar.gz")
    with pytest.raises(
        SourceError, match=r"cv-corpus-evil\.tar\.gz: refusing unsafe member 'cv/a'"
    ):
        open_source(archive)
    assert not Path("/tmp/escaped-by-links.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cv-corpus-evil.tar.gz"]


def test_link_chains_are_refused_in_a_packed_store(tmp_path):
    archive = link_chain_archive(tmp_path / "store.tar")
    with pytest.raises(StoreError, match=r"store\.tar: refusing unsafe member 'cv/a'"):
        fetch_store(str(archive), tmp_path / "fetched")
    assert not Path("/tmp/escaped-by-links.txt").exists() and not (tmp_path / "fetched").exists()


# --- what a download link serves instead of an archive -----------------------------------------


class _Pages(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def www(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Pages, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_page_instead_of_an_archive_is_named(www, tmp_path):
    root, base = www
    (root / "store.tar").write_text("<!DOCTYPE html><html><body>Sign in to continue</body></html>")
    with pytest.raises(
        StoreError, match=r"store\.tar.: the server sent a web page, not a store archive"
    ):
        fetch_store(f"{base}/store.tar", tmp_path / "dest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["www"]  # no partial files left


def test_an_archive_over_the_cap_is_stopped(www, sample_store, tmp_path):
    root, base = www
    pack_store(sample_store, root / "store.tar")
    with pytest.raises(StoreError, match=r"store\.tar': larger than 0\.1 MB; stopped"):
        fetch_store(f"{base}/store.tar", tmp_path / "dest", max_bytes=100_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["www"]


# --- two runs on one store ---------------------------------------------------------------------


def test_a_second_run_on_a_held_store_is_refused_naming_the_holder(tmp_path):
    store = tmp_path / "store"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from utils.store import hold\n"
         f"with hold({str(store)!r}, 'feature store'):\n    print('held', flush=True); time.sleep(60)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        from utils.store import hold

        started = time.monotonic()
        with (
            pytest.raises(StoreError, match=rf'feature store is in use by .*"pid": {holder.pid}'),
            hold(store, "feature store"),
        ):
            pass
        assert time.monotonic() - started < 5  # refused at once, not after a wait
    finally:
        holder.kill()
        holder.wait()
    with hold(store, "feature store"):  # a dead holder leaves nothing that blocks
        pass


# --- Common Voice tables that point elsewhere --------------------------------------------------


def locale_copy(tmp_path) -> Path:
    loc = tmp_path / "cv" / "sv-SE"
    shutil.copytree(SV, loc)
    return loc


@pytest.mark.parametrize("path", ["/etc/passwd", "../../../../etc/passwd", "sub/../../x.mp3"])
def test_clip_paths_must_stay_in_clips(tmp_path, path):
    loc = locale_copy(tmp_path)
    lines = (loc / "train.tsv").read_text(encoding="utf-8").splitlines()
    cells = lines[2].split("\t")
    cells[1] = path
    lines[2] = "\t".join(cells)
    (loc / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"train\.tsv.*row 3"):
        list(open_source(loc).examples("train"))


def test_duplicate_clip_ids_are_refused(tmp_path):
    loc = locale_copy(tmp_path)
    lines = (loc / "train.tsv").read_text(encoding="utf-8").splitlines()
    (loc / "train.tsv").write_text("\n".join([*lines, lines[1]]) + "\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"train\.tsv, row 26: clip .* repeats train\.tsv row 2"):
        list(open_source(loc).examples("train"))


def test_a_non_utf8_byte_is_named_with_its_row(tmp_path):
    loc = locale_copy(tmp_path)
    data = (loc / "train.tsv").read_bytes().split(b"\n")
    data[3] = data[3].replace(b"\t", b"\t\xff", 1)
    (loc / "train.tsv").write_bytes(b"\n".join(data))
    with pytest.raises(SourceError, match=r"train\.tsv.*(row|line) 4.*UTF-8"):
        list(open_source(loc).examples("train"))


# --- random bytes into every parser ------------------------------------------------------------

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
TEXT = st.one_of(
    st.binary(max_size=400),
    st.lists(
        st.lists(
            st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12), max_size=5
        ),
        max_size=6,
    ).map(lambda rows: "\n".join("\t".join(r) for r in rows).encode()),
)


@FUZZ
@given(data=TEXT, quoting=st.booleans())
def test_tables_give_rows_or_a_named_error(tmp_path_factory, data, quoting):
    path = tmp_path_factory.mktemp("fuzz") / "train.tsv"
    path.write_bytes(data)
    try:
        rows = list(read_rows(path, delimiter="\t", quoting=quoting))
    except PipelineError as err:
        assert "train.tsv" in str(err)
    else:
        assert all(isinstance(n, int) and isinstance(cells, list) for n, cells in rows)


@FUZZ
@given(data=TEXT)
def test_manifests_give_examples_or_a_named_error(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "mine.csv"
    path.write_bytes(data.replace(b"\t", b","))
    try:
        source = ManifestSource(path)
        examples = [e for split in source.splits() for e in source.examples(split)]
    except PipelineError as err:
        assert "mine.csv" in str(err)
    else:  # every clip it would read lies inside the manifest's folder
        assert all(
            Path(e.audio).resolve().is_relative_to(folder.resolve())
            for e in examples
            if isinstance(e.audio, str)
        )


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(
    manifest=st.one_of(
        JSON,
        st.fixed_dictionaries(
            {"format": st.just(2), "splits": JSON, "sources": JSON},
            optional={
                "shards": st.lists(
                    st.dictionaries(st.sampled_from(["file", "rows", "split", "source"]), JSON),
                    max_size=3,
                )
            },
        ),
    )
)
def test_store_manifests_give_a_store_or_a_named_error(tmp_path_factory, manifest):
    folder = tmp_path_factory.mktemp("fuzzstore")
    try:
        checked = check_manifest(folder, manifest)
    except StoreError as err:
        assert "manifest.json" in str(err) or str(folder) in str(err)
    else:
        for shard in checked["shards"]:
            assert (folder / shard["file"]).resolve().is_relative_to(folder.resolve())


# --- manifests that would quietly lose rows, and a store that cannot be written -----------------


def test_an_unbalanced_quote_and_a_header_only_manifest_are_named(tmp_path):
    for name in ("a.mp3", "b.mp3", "c.mp3"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "quote.csv").write_text(
        'path,sentence\na.mp3,"Hello there\nb.mp3,two\nc.mp3,three\n'
    )
    with pytest.raises(SourceError, match=r"quote\.csv, row 2: a quoted field runs over 3 lines"):
        list(ManifestSource(tmp_path / "quote.csv").examples("train"))
    (tmp_path / "header.csv").write_text("path,sentence\n")
    with pytest.raises(SourceError, match=r"header\.csv: no rows under the header"):
        ManifestSource(tmp_path / "header.csv")


def test_an_unwritable_store_folder_is_one_line_not_a_traceback(tmp_path, tiny_whisper):
    # root ignores file modes, so "unwritable" is made the way that stops root too: a file where
    # the store's parent folder should be
    (tmp_path / "afile").write_text("x")
    run = subprocess.run(
        [sys.executable, "-m", "utils.featurize", "--source", str(SV), "--model", str(tiny_whisper)]
        + ["--store", str(tmp_path / "afile" / "store")],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().endswith(
        "afile/store: cannot write the feature store here (Not a directory)"
    )
