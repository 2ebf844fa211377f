"""The feature store: compact log-Mel features and labels in parquet shards, plus a manifest.

Layout (a directory, on local disk or a Google Drive folder):

    <store>/settings.json                               what the store is built with (written first)
    <store>/shards/<source>/<split>-<index:05d>.parquet  rows of one shard
    <store>/shards/<source>/<split>-<index:05d>.json     its "done" record: sha256, rows, skipped
    <store>/manifest.json                               written last: the store is complete

Every file is written to a temporary name and moved into place with os.replace, so a process killed
at any moment leaves either the old file or the new one, never half of one. A shard counts as done
only when its record exists and the parquet file's sha256 matches the record; anything else is
re-extracted by the pipeline. The store knows nothing of how features are made or used: the
feature pipeline writes it, training reads it through `FeatureStore.dataset`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from .features import N_FRAMES

FORMAT = 1  # bump when the layout or the row schema changes incompatibly
MANIFEST = "manifest.json"
SETTINGS = "settings.json"
SHARDS = "shards"
# 64 rows (~3-5 MB of features) per parquet row group: the unit the reader decodes and caches, so a
# random read costs at most one small group, while sequential reads stay at full disk speed.
ROW_GROUP_ROWS = 64
# zstd makes float16 log-Mel frames ~22 % smaller than raw and still decodes at > 600 MB/s
# (measured on the sample corpus), far above what training consumes.
COMPRESSION = "zstd"
# Decoded feature row groups kept in memory per reader (per DataLoader worker): a store that fits
# is read from disk once per epoch even in random order.
DEFAULT_CACHE_BYTES = 2 << 30
HASH_BLOCK = 1 << 20  # read files in 1 MiB blocks when hashing

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("labels", pa.list_(pa.int32()), nullable=False),
        pa.field("features", pa.binary(), nullable=False),  # float16 C-order [n_mels, n_frames]
        pa.field("n_frames", pa.int32(), nullable=False),
        pa.field("pad_value", pa.float32(), nullable=False),
        pa.field("duration", pa.float32(), nullable=False),
        pa.field("augment", pa.string(), nullable=False),  # JSON of what was applied, "" = none
    ]
)
TRAINING_SPLITS = ("train", "dev")  # what training reads by default; "test" is for evaluation
# Everything but the features: small, read eagerly for the whole dataset.
LIGHT_COLUMNS = ["id", "source", "text", "labels", "n_frames", "pad_value"]


class StoreError(RuntimeError):
    """A store that is missing, incomplete, corrupted or built with other settings."""


# ---------------------------------------------------------------------------------------- writing


def safe_name(name: str) -> str:
    """A source name usable as a directory name (anything outside [A-Za-z0-9._-] becomes '_')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"


def shard_stem(source: str, split: str, index: int) -> str:
    """Store-relative path of a shard without extension, e.g. 'shards/cv-sv-SE/train-00003'."""
    return f"{SHARDS}/{safe_name(source)}/{split}-{index:05d}"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _tmp_path(path: Path) -> Path:
    # The pid keeps two writers (a stale run and a new one) from sharing a temporary name.
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_json_atomic(path: str | Path, obj) -> None:
    """Write JSON to `path` via a temporary file and os.replace (all or nothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: str | Path):
    """Parsed JSON of a file, or None when it does not exist or is not valid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def rows_to_table(rows: Sequence[dict]) -> pa.Table:
    """An arrow table of store rows (dicts with the SCHEMA's keys)."""
    columns = {field.name: [row[field.name] for row in rows] for field in SCHEMA}
    return pa.table(columns, schema=SCHEMA)


def write_shard(
    store: str | Path,
    source: str,
    split: str,
    index: int,
    rows: Sequence[dict],
    skipped: Sequence[dict] = (),
    examples: int | None = None,
) -> dict:
    """Write one shard (parquet, then its done record) and return the record.

    `skipped` lists {id, reason, detail} of the shard's examples that gave no row; `examples` is
    how many source examples the shard covers (rows + skipped unless augmentation adds rows).
    """
    store = Path(store)
    stem = shard_stem(source, split, index)
    parquet = store / f"{stem}.parquet"
    parquet.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(parquet)
    pq.write_table(
        rows_to_table(rows),
        tmp,
        row_group_size=ROW_GROUP_ROWS,
        compression=COMPRESSION,
        use_dictionary=["split", "source", "augment"],
        write_statistics=["id", "n_frames", "duration"],
    )
    os.replace(tmp, parquet)
    record = {
        "file": f"{stem}.parquet",
        "source": source,
        "split": split,
        "index": index,
        "rows": len(rows),
        "examples": len(rows) + len(skipped) if examples is None else examples,
        "seconds": round(float(sum(row["duration"] for row in rows)), 3),
        "sha256": sha256_file(parquet),
        "bytes": parquet.stat().st_size,
        "skipped": list(skipped),
    }
    write_json_atomic(store / f"{stem}.json", record)
    return record


def shard_problem(store: str | Path, record: dict) -> str | None:
    """What is wrong with a shard's parquet file compared with its record, or None if it is intact."""
    path = Path(store) / record["file"]
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != record["bytes"]:
        kind = "truncated" if size < record["bytes"] else "longer than recorded"
        return f"{kind} ({size} bytes, the record says {record['bytes']})"
    digest = sha256_file(path)
    if digest != record["sha256"]:
        return f"corrupted (sha256 {digest[:12]}..., the record says {record['sha256'][:12]}...)"
    return None


def done_shard(
    store: str | Path, source: str, split: str, index: int
) -> tuple[dict | None, str | None]:
    """(record, None) for a done shard; (None, problem) when its record exists but the shard is
    damaged; (None, None) when the shard was never finished."""
    record = read_json(Path(store) / f"{shard_stem(source, split, index)}.json")
    if record is None:
        return None, None
    problem = shard_problem(store, record)
    return (None, problem) if problem else (record, None)


def remove_shard(store: str | Path, source: str, split: str, index: int) -> None:
    """Delete a shard's record (first: it is what marks the shard done) and its parquet file."""
    stem = Path(store) / shard_stem(source, split, index)
    for suffix in (".json", ".parquet"):
        stem.with_suffix(suffix).unlink(missing_ok=True)


def remove_tmp_files(store: str | Path) -> int:
    """Delete temporary files left by killed writers; returns how many."""
    found = list(Path(store).rglob(".*.tmp"))
    for tmp in found:
        tmp.unlink(missing_ok=True)
    return len(found)


def write_manifest(store: str | Path, manifest: dict) -> None:
    """Write manifest.json atomically: the last write of a run, marking the store complete."""
    write_json_atomic(Path(store) / MANIFEST, manifest)


def directory_bytes(path: str | Path) -> int:
    """Total size of the files under a directory."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------- reading


def _as_list(value: str | Iterable[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


class FeatureStore:
    """A complete store on disk: `.manifest`, `.dataset(...)`, `.hf_dataset(...)`, `.verify()`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            hint = (
                " (an unfinished run: rerun the feature pipeline to complete it)"
                if (self.path / SHARDS).is_dir()
                else ""
            )
            raise StoreError(f"{self.path}: no {MANIFEST}, so not a complete feature store{hint}")
        manifest = read_json(manifest_path)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise StoreError(f"{manifest_path}: not a format-{FORMAT} store manifest")
        self.manifest = manifest

    @property
    def settings(self) -> dict:
        return self.manifest["settings"]

    @property
    def n_mels(self) -> int:
        return int(self.settings["n_mels"])

    def shards(self, splits=None, sources=None) -> list[dict]:
        """Manifest entries of the shards of the given splits/sources (all when None), in order."""
        splits, sources = _as_list(splits), _as_list(sources)
        for split in splits or ():
            if split not in self.manifest["splits"]:
                have = list(self.manifest["splits"])
                raise StoreError(f"{self.path}: no split {split!r} (it has {have})")
        known_sources = set(self.manifest["sources"])
        for source in sources or ():
            if source not in known_sources:
                raise StoreError(
                    f"{self.path}: no source {source!r} (it has {sorted(known_sources)})"
                )
        return [
            shard
            for shard in self.manifest["shards"]
            if (splits is None or shard["split"] in splits)
            and (sources is None or shard["source"] in sources)
        ]

    def files(self, splits=None, sources=None) -> list[Path]:
        """Paths of the parquet shards of the given splits/sources."""
        return [self.path / shard["file"] for shard in self.shards(splits, sources)]

    def dataset(self, splits=None, sources=None, cache_bytes: int = DEFAULT_CACHE_BYTES):
        """A torch Dataset over the rows of `splits` (default: the training splits, train and dev,
        that the store has)."""
        if splits is None:
            splits = [s for s in TRAINING_SPLITS if s in self.manifest["splits"]]
        return FeatureDataset(self.path, self.shards(splits, sources), self.n_mels, cache_bytes)

    def hf_dataset(self, split: str, sources=None, **kwargs):
        """The rows of one split as a Hugging Face `datasets.Dataset` (read from the parquet shards)."""
        import datasets

        files = [str(f) for f in self.files(split, sources)]
        if not files:
            return datasets.Dataset.from_dict(
                {f.name: [] for f in SCHEMA}, features=datasets.Features.from_arrow_schema(SCHEMA)
            )
        return datasets.Dataset.from_parquet(files, split=split, **kwargs)

    def column(self, name: str, splits=None, sources=None) -> list:
        """One light column (e.g. 'duration', 'id') of the given splits, without reading features."""
        files = self.files(splits, sources)
        if not files:
            return []
        tables = [pq.read_table(f, columns=[name], memory_map=True) for f in files]
        return pa.concat_tables(tables).column(name).to_pylist()

    def verify(self) -> dict:
        """Check every shard against the manifest (presence, size, sha256, parquet footer, row count).

        Returns {"shards": n, "rows": n, "bytes": n}; raises StoreError naming each bad shard.
        """
        problems = []
        for shard in self.manifest["shards"]:
            problem = shard_problem(self.path, shard)
            if problem is None:
                try:
                    rows = pq.ParquetFile(self.path / shard["file"]).metadata.num_rows
                except Exception as err:  # a footer pyarrow cannot parse, whatever the cause
                    problem = f"unreadable parquet ({err})"
                else:
                    if rows != shard["rows"]:
                        problem = f"holds {rows} rows, the manifest says {shard['rows']}"
            if problem:
                problems.append(f"{shard['file']}: {problem}")
        if problems:
            raise StoreError(f"{self.path}: {len(problems)} bad shard(s): " + "; ".join(problems))
        return {
            "shards": len(self.manifest["shards"]),
            "rows": sum(s["rows"] for s in self.manifest["shards"]),
            "bytes": sum(s["bytes"] for s in self.manifest["shards"]),
        }

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, splits={self.manifest['splits']})"


class FeatureDataset(torch.utils.data.Dataset):
    """Rows of a store as dicts {"features": float16 [n_mels, n], "pad_value", "labels", "id",
    "text", "source"}.

    Light columns are read once for all rows; features are decoded a parquet row group at a time
    (memory-mapped, zero-copy np.frombuffer views) and kept in an LRU cache of `cache_bytes`.
    Iterate in `grouped_order` (or with `RowGroupSampler`) when the store is larger than the cache.
    """

    def __init__(
        self,
        root: str | Path,
        shards: Sequence[dict],
        n_mels: int,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        self.root = Path(root)
        self.files = [str(self.root / shard["file"]) for shard in shards]
        self.n_mels = n_mels
        self.cache_bytes = cache_bytes
        tables, group_starts, shard_of_row, row_in_shard = [], [], [], []
        for s, file in enumerate(self.files):
            table = pq.read_table(file, columns=LIGHT_COLUMNS, memory_map=True)
            meta = pq.ParquetFile(file).metadata
            sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
            group_starts.append(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
            shard_of_row.append(np.full(table.num_rows, s, dtype=np.int32))
            row_in_shard.append(np.arange(table.num_rows, dtype=np.int64))
            tables.append(table)
        table = (
            pa.concat_tables(tables)
            if tables
            else pa.table({c: pa.array([], SCHEMA.field(c).type) for c in LIGHT_COLUMNS})
        )
        self._ids = table.column("id").to_pylist()
        self._texts = table.column("text").to_pylist()
        self._sources = table.column("source").to_pylist()
        self._n_frames = table.column("n_frames").to_numpy()
        self._pad = table.column("pad_value").to_numpy()
        labels = table.column("labels").combine_chunks()
        self._label_offsets = np.asarray(labels.offsets)
        self._label_values = np.asarray(labels.values)
        self._group_starts = group_starts
        self._shard = np.concatenate(shard_of_row) if shard_of_row else np.zeros(0, np.int32)
        self._row = np.concatenate(row_in_shard) if row_in_shard else np.zeros(0, np.int64)
        self._cache: OrderedDict = OrderedDict()
        self._cached_bytes = 0
        self._handles: dict[int, pq.ParquetFile] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __getstate__(self):
        # Open parquet handles and the cache stay behind when a DataLoader worker is spawned.
        state = self.__dict__.copy()
        state.update(_cache=OrderedDict(), _cached_bytes=0, _handles={})
        return state

    def _group_of(self, i: int) -> tuple[int, int, int]:
        s, r = int(self._shard[i]), int(self._row[i])
        g = int(np.searchsorted(self._group_starts[s], r, side="right")) - 1
        return s, g, r - int(self._group_starts[s][g])

    def _row_group(self, s: int, g: int):
        key = (s, g)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        handle = self._handles.get(s)
        if handle is None:
            handle = self._handles[s] = pq.ParquetFile(self.files[s], memory_map=True)
        column = handle.read_row_group(g, columns=["features"]).column(0).combine_chunks()
        # Zero-copy access: the binary column's offsets and one data buffer.
        offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[
            column.offset : column.offset + len(column) + 1
        ]
        entry = (offsets, column.buffers()[2], column.nbytes)
        self._cache[key] = entry
        self._cached_bytes += entry[2]
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= old[2]
        return entry

    def features(self, i: int) -> np.ndarray:
        """The stored float16 [n_mels, n_frames] frames of row i (a read-only view)."""
        s, g, j = self._group_of(i)
        offsets, data, _ = self._row_group(s, g)
        start, end = int(offsets[j]), int(offsets[j + 1])
        frames = np.frombuffer(data, dtype=np.float16, count=(end - start) // 2, offset=start)
        return frames.reshape(self.n_mels, int(self._n_frames[i]))

    def labels(self, i: int) -> list[int]:
        return self._label_values[self._label_offsets[i] : self._label_offsets[i + 1]].tolist()

    def __getitem__(self, i: int) -> dict:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} out of range for a dataset of {len(self)} rows")
        return {
            "features": self.features(i),
            "pad_value": float(self._pad[i]),
            "labels": self.labels(i),
            "id": self._ids[i],
            "text": self._texts[i],
            "source": self._sources[i],
        }

    def grouped_order(self, seed: int = 0) -> list[int]:
        """A random order that visits row groups one at a time (shuffled groups, shuffled rows in
        each): nearly as random as a full shuffle for SGD, but every row group is decoded once."""
        rng = np.random.default_rng(seed)
        groups = []
        start = 0
        for s, bounds in enumerate(self._group_starts):
            del s
            for g in range(len(bounds) - 1):
                groups.append(np.arange(start + bounds[g], start + bounds[g + 1]))
            start += int(bounds[-1])
        order = []
        for g in rng.permutation(len(groups)):
            order.extend(rng.permutation(groups[g]).tolist())
        return order


class RowGroupSampler(torch.utils.data.Sampler):
    """Sampler giving `FeatureDataset.grouped_order`, reshuffled each epoch (call set_epoch)."""

    def __init__(self, dataset: FeatureDataset, seed: int = 0):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(self.dataset.grouped_order(self.seed + self.epoch))

    def __len__(self) -> int:
        return len(self.dataset)


def pad_batch(items: Sequence[dict], n_frames: int = N_FRAMES) -> np.ndarray:
    """Stack items' compact frames into the padded float32 [B, n_mels, n_frames] model input."""
    n_mels = items[0]["features"].shape[0]
    out = np.empty((len(items), n_mels, n_frames), dtype=np.float32)
    for b, item in enumerate(items):
        frames = item["features"]
        n = min(frames.shape[1], n_frames)
        out[b, :, :n] = frames[:, :n]
        out[b, :, n:] = item["pad_value"]
    return out


# --------------------------------------------------------------------------- pack, fetch and copy


def _store_members(store: FeatureStore) -> list[str]:
    # Shards with their done records: an unpacked or copied store can be resumed like the original.
    members = []
    for shard in store.manifest["shards"]:
        members += [shard["file"], shard["file"].removesuffix(".parquet") + ".json"]
    if (store.path / SETTINGS).is_file():
        members.append(SETTINGS)
    return [*members, MANIFEST]  # manifest last, like on disk


def pack_store(store: str | Path, archive: str | Path) -> Path:
    """Verify a store and pack it into one uncompressed .tar (the parquet shards are compressed
    already), for uploading to Drive and fetching with `fetch_store`."""
    feature_store = FeatureStore(store)
    feature_store.verify()
    archive = Path(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(archive)
    with tarfile.open(tmp, "w") as tar:
        for member in _store_members(feature_store):
            tar.add(feature_store.path / member, arcname=member)
    os.replace(tmp, archive)
    return archive


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _download(id_or_url: str, output: Path) -> Path:
    import gdown

    # gdown 6 takes a Drive file id as id=..., a Drive share link or any other URL as url=...
    kwargs = {"url": id_or_url} if _is_url(id_or_url) else {"id": id_or_url}
    try:
        result = gdown.download(output=str(output), quiet=False, **kwargs)
    except Exception as err:
        raise StoreError(f"cannot download the store archive {id_or_url!r}: {err}") from err
    if not result or not output.is_file():
        raise StoreError(f"cannot download the store archive {id_or_url!r}: nothing was written")
    return output


def unpack_store(archive: str | Path, dest: str | Path) -> FeatureStore:
    """Extract a packed store into `dest` (replacing it), verify it, and return it."""
    archive, dest = Path(archive), Path(dest)
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with tarfile.open(archive) as tar:
            # The "data" filter refuses absolute paths, links out of the folder and devices.
            tar.extractall(partial, filter="data")
    except (tarfile.TarError, OSError, EOFError) as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise StoreError(f"{archive}: not a readable store archive ({err})") from err
    FeatureStore(partial).verify()
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(partial, dest)
    return FeatureStore(dest)


def fetch_store(
    id_or_url: str, dest: str | Path, force: bool = False, keep_archive: bool = False
) -> FeatureStore:
    """Fetch a packed store with gdown (a Drive file id, a Drive share link or any http(s) URL; a
    local .tar path also works), unpack it into `dest` and verify it.

    A `dest` that already holds a complete, intact store is kept as is (no download) unless `force`.
    """
    dest = Path(dest)
    if not force and (dest / MANIFEST).is_file():
        try:
            existing = FeatureStore(dest)
            existing.verify()
            print(f"{dest}: already holds a verified store; not downloading again")
            return existing
        except StoreError as err:
            print(f"{dest}: existing store is not usable ({err}); fetching again")
    if not _is_url(id_or_url) and Path(id_or_url).is_file():
        return unpack_store(id_or_url, dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    archive = dest.with_name(dest.name + ".tar")
    _download(id_or_url, archive)
    try:
        return unpack_store(archive, dest)
    except StoreError as err:
        raise StoreError(f"store archive fetched from {id_or_url!r}: {err}") from err
    finally:
        if not keep_archive:
            archive.unlink(missing_ok=True)


def copy_to_local(store: str | Path, dest: str | Path | None = None) -> FeatureStore:
    """Copy a store (e.g. on Drive, slow for random reads) to local disk and verify the copy.

    Shards already present at `dest` with the right checksum are not copied again; the manifest is
    written last, so an interrupted copy is finished by calling this again. `dest` defaults to a
    folder under the system temp dir named after the store.
    """
    source = FeatureStore(store)
    dest = (
        Path(dest)
        if dest is not None
        else Path(tempfile.gettempdir()) / "feature-stores" / source.path.name
    )
    if source.path.resolve() == dest.resolve():
        return source
    if read_json(dest / MANIFEST) == source.manifest:
        copied = FeatureStore(dest)
        try:
            copied.verify()
            return copied
        except StoreError:
            pass
    (dest / MANIFEST).unlink(missing_ok=True)
    for member in _store_members(source)[:-1]:
        target = dest / member
        shard = next((s for s in source.manifest["shards"] if s["file"] == member), None)
        if shard is not None and shard_problem(dest, shard) is None:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_path(target)
        shutil.copyfile(source.path / member, tmp)
        os.replace(tmp, target)
    write_manifest(dest, source.manifest)
    copied = FeatureStore(dest)
    copied.verify()
    return copied
