"""The feature store: reading as torch/HF datasets, verification, pack + gdown fetch, local copy."""

import functools
import http.server
import json
import shutil
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from utils.features import N_FRAMES
from utils.store import (
    MANIFEST,
    FeatureStore,
    RowGroupSampler,
    StoreError,
    copy_to_local,
    fetch_store,
    pack_store,
)


@pytest.fixture
def store_copy(sample_store, tmp_path) -> Path:
    """A private copy of the session's sample store, free to damage."""
    return Path(shutil.copytree(sample_store, tmp_path / "store"))


def test_manifest_counts_and_settings(sample_store):
    store = FeatureStore(sample_store)
    m = store.manifest
    assert m["format"] == 2
    assert m["splits"] == {"train": 24, "dev": 6, "test": 6}
    assert m["sources"] == {"cv-sv-SE": {"train": 24, "dev": 6, "test": 6}}
    assert m["skipped"] == {} and m["skipped_clips"] == []
    settings = m["settings"]
    assert settings["n_mels"] == 80 and settings["language"] == "sv"
    assert settings["sampling_rate"] == 16000 and settings["augment"] is None
    # <|startoftranscript|><|sv|><|transcribe|><|notimestamps|>: the real Whisper ids
    assert settings["label_prefix"] == [50258, 50273, 50359, 50363]
    assert [s["file"] for s in m["shards"]] == [
        "shards/cv-sv-SE/train-00000.parquet",
        "shards/cv-sv-SE/train-00001.parquet",
        "shards/cv-sv-SE/train-00002.parquet",
        "shards/cv-sv-SE/dev-00000.parquet",
        "shards/cv-sv-SE/test-00000.parquet",
    ]
    assert m["bytes"] == sum(s["bytes"] for s in m["shards"])
    assert store.verify() == {"shards": 5, "rows": 36, "bytes": m["bytes"]}


def test_dataset_items(sample_store):
    ds = FeatureStore(sample_store).dataset(["train", "dev"])
    assert len(ds) == 30
    ids = [ds[i]["id"] for i in range(len(ds))]
    assert len(set(ids)) == 30 and all(i.startswith("common_voice_sv-SE_") for i in ids)
    item = ds[0]
    assert set(item) == {
        "features",
        "pad_value",
        "labels",
        "id",
        "text",
        "source",
        "speech",
        "training",
    }
    # where speech starts and ends (timestamp labels): inside the clip, on the 20 ms grid
    start, end = item["speech"]
    assert 0 <= start < end <= item["features"].shape[1] / 100 + 0.02 and not item["training"]
    assert round(start / 0.02, 4) == round(start / 0.02) and round(end / 0.02, 4) == round(
        end / 0.02
    )
    assert item["features"].dtype == np.float16 and item["features"].shape[0] == 80
    assert 100 < item["features"].shape[1] < N_FRAMES  # a few seconds: only the frames with audio
    assert item["labels"][:4] == [50258, 50273, 50359, 50363] and item["labels"][-1] == 50257
    assert item["source"] == "cv-sv-SE" and item["text"]
    assert -1.5 <= item["pad_value"] <= float(item["features"].max())
    assert ds[-1]["id"] == ids[-1]
    with pytest.raises(IndexError):
        ds[30]


def test_dataset_selects_splits_and_sources(sample_store):
    store = FeatureStore(sample_store)
    assert len(store.dataset("test")) == 6
    assert len(store.dataset(["train", "dev", "test"], sources=["cv-sv-SE"])) == 36
    assert len(store.dataset()) == 30  # default: the training splits, train + dev
    with pytest.raises(StoreError, match="no source 'cv-xx'"):
        store.dataset("test", sources=["cv-xx"])
    with pytest.raises(StoreError, match=r"no split 'tset' \(it has \['train', 'dev', 'test'\]\)"):
        store.dataset("tset")


def test_hf_dataset(sample_store):
    store = FeatureStore(sample_store)
    hf = store.hf_dataset("test", cache_dir=str(Path(sample_store).parent / "hf-cache"))
    assert hf.num_rows == 6
    assert set(hf.column_names) >= {"id", "text", "labels", "features", "n_frames", "pad_value"}
    row = hf[0]
    frames = np.frombuffer(row["features"], dtype=np.float16).reshape(80, row["n_frames"])
    np.testing.assert_array_equal(frames, store.dataset("test")[0]["features"])


def test_grouped_order_and_sampler_visit_every_row_once(sample_store):
    ds = FeatureStore(sample_store).dataset(["train", "dev", "test"])
    order = ds.grouped_order(seed=3)
    assert sorted(order) == list(range(len(ds)))
    sampler = RowGroupSampler(ds, seed=3)
    first = list(sampler)
    sampler.set_epoch(1)
    assert sorted(list(sampler)) == sorted(first) and list(sampler) != first


def test_missing_manifest_is_named(sample_store, tmp_path):
    with pytest.raises(StoreError, match=r"no manifest\.json"):
        FeatureStore(tmp_path)
    partial = Path(shutil.copytree(sample_store, tmp_path / "partial"))
    (partial / MANIFEST).unlink()
    with pytest.raises(StoreError, match="unfinished run"):
        FeatureStore(partial)


def test_verify_names_a_truncated_shard(store_copy):
    shard = store_copy / "shards/cv-sv-SE/train-00001.parquet"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match=r"train-00001\.parquet: truncated") as err:
        FeatureStore(store_copy).verify()
    assert "train-00000" not in str(err.value)


def test_verify_names_a_corrupted_shard(store_copy):
    shard = store_copy / "shards/cv-sv-SE/dev-00000.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one flipped byte in the middle of the features
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"dev-00000\.parquet: corrupted \(sha256"):
        FeatureStore(store_copy).verify()


def test_verify_names_a_missing_shard(store_copy):
    (store_copy / "shards/cv-sv-SE/test-00000.parquet").unlink()
    with pytest.raises(StoreError, match=r"test-00000\.parquet: missing"):
        FeatureStore(store_copy).verify()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args):  # keep pytest output clean; remember what was asked
        _QuietHandler.requests.append(self.path)


@pytest.fixture
def http_root(tmp_path):
    """A real HTTP server on 127.0.0.1 (ephemeral port) serving a folder; shut down afterwards."""
    root = tmp_path / "www"
    root.mkdir()
    _QuietHandler.requests = []
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_pack_and_fetch_with_gdown_from_a_loopback_server(sample_store, http_root, tmp_path):
    root, base = http_root
    archive = pack_store(sample_store, root / "store.tar")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert names[-1] == MANIFEST and "shards/cv-sv-SE/train-00000.parquet" in names
    assert "shards/cv-sv-SE/train-00000.json" in names  # done records travel: resumable copy

    dest = tmp_path / "fetched"
    fetched = fetch_store(f"{base}/store.tar", dest)
    assert fetched.manifest == FeatureStore(sample_store).manifest
    assert fetched.verify()["rows"] == 36
    assert not (tmp_path / "fetched.tar").exists()  # the archive is not kept by default
    assert _QuietHandler.requests == ["/store.tar"]
    np.testing.assert_array_equal(
        fetched.dataset("test")[2]["features"],
        FeatureStore(sample_store).dataset("test")[2]["features"],
    )

    # A second fetch into a verified store downloads nothing.
    fetch_store(f"{base}/store.tar", dest)
    assert _QuietHandler.requests == ["/store.tar"]


def test_fetch_errors_name_the_archive(sample_store, http_root, tmp_path):
    root, base = http_root
    with pytest.raises(StoreError, match=r"cannot download the store archive '.*/missing\.tar'"):
        fetch_store(f"{base}/missing.tar", tmp_path / "a")
    data = pack_store(sample_store, tmp_path / "full.tar").read_bytes()
    (root / "cut.tar").write_bytes(data[: len(data) // 3])
    with pytest.raises(StoreError, match=r"cut"):
        fetch_store(f"{base}/cut.tar", tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_unpack_from_a_local_archive(sample_store, tmp_path):
    archive = pack_store(sample_store, tmp_path / "s.tar")
    store = fetch_store(str(archive), tmp_path / "local")
    assert store.manifest["splits"] == {"train": 24, "dev": 6, "test": 6}


def test_copy_to_local_resumes_and_skips_done_work(sample_store, tmp_path):
    dest = tmp_path / "local"
    copied = copy_to_local(sample_store, dest)
    assert copied.manifest == FeatureStore(sample_store).manifest and copied.verify()
    shard = dest / "shards/cv-sv-SE/train-00000.parquet"
    stamp = shard.stat().st_mtime_ns
    # An interrupted copy: no manifest yet and a shard cut short. Calling again finishes it.
    (dest / MANIFEST).unlink()
    cut = dest / "shards/cv-sv-SE/train-00002.parquet"
    cut.write_bytes(cut.read_bytes()[:100])
    copy_to_local(sample_store, dest).verify()
    assert shard.stat().st_mtime_ns == stamp  # intact shards were not copied again
    assert json.loads((dest / MANIFEST).read_text()) == FeatureStore(sample_store).manifest


def test_free_space_is_checked_before_writing(tmp_path):
    from utils.store import check_free_space

    store = tmp_path / "a" / "new" / "store"  # not made yet: its nearest folder's disk counts
    assert check_free_space(store, 100) == 100 * 80_000
    assert check_free_space(store, 100, n_mels=128) == 100 * 128_000
    # a billion clips (80 TB) do not fit on this machine's disk: said before anything is written
    with pytest.raises(StoreError, match=r"store: 1000000000 clips need about 80,000,000 MB, only"):
        check_free_space(store, 10**9)
    assert not store.exists()
    # on Drive the message points at the quota (a Drive mount cannot exist here: free is given)
    drive = tmp_path / "content" / "drive" / "MyDrive" / "store"
    with pytest.raises(StoreError, match="Google Drive quota"):
        check_free_space(drive, 1000, free=10_000_000)
