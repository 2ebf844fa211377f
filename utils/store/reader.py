"""Reading a store: `FeatureStore` (manifest, verification, datasets) and the torch Dataset.

A store is only opened when its manifest (written last) exists and agrees with itself: every shard
it lists lies inside the store, and the clips it counts per split and source are the sum of its
shards' rows. `verify()` then checks every shard file against the manifest (size, sha256, parquet
footer, rows) and that no finished shard on disk is missing from it; training runs it before use.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..errors import StoreError
from ..whisper_lang import TRAIN_SPLITS
from .layout import (
    DEFAULT_CACHE_BYTES,
    FORMAT,
    LIGHT_COLUMNS,
    MANIFEST,
    NAME_RE,
    SCHEMA,
    SHARDS,
    inside,
    read_json,
)
from .writer import shard_problem


def _as_list(value: str | Iterable[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def check_manifest(path: Path, manifest) -> dict:
    """The manifest when it is a format-{FORMAT} store manifest that agrees with itself (shards
    inside the store, counts that add up), else StoreError naming the problem."""
    where = path / MANIFEST
    if isinstance(manifest, dict) and manifest.get("format") in range(1, FORMAT):
        raise StoreError(
            f"{where}: a store of an older format ({manifest['format']}, now {FORMAT}): build it "
            "again with notebook 01 (or `python -m utils.featurize`) into a new folder"
        )
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StoreError(f"{where}: not a format-{FORMAT} store manifest")
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not all(isinstance(s, dict) for s in shards):
        raise StoreError(f"{where}: no list of shards")

    def mapping(value, what: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise StoreError(f"{where}: {what} is not a mapping")
        return value

    claimed = mapping(manifest.get("splits"), "'splits'")
    claimed_sources = {
        name: mapping(counts, f"source {name!r}")
        for name, counts in mapping(manifest.get("sources"), "'sources'").items()
    }
    splits, sources = Counter(), {}
    for shard in shards:
        try:
            inside(path, shard["file"], "shard file")
            rows = int(shard["rows"])
            split, source = str(shard["split"]), str(shard["source"])
        except (KeyError, TypeError, ValueError) as err:
            raise StoreError(f"{where}: a shard entry is malformed ({err})") from None
        if not NAME_RE.match(split):  # a split name becomes part of file names on a rerun
            raise StoreError(f"{where}: split name {split!r}: only letters, digits, '.', '_', '-'")
        splits[split] += rows
        sources.setdefault(source, Counter())[split] += rows
    claimed = {k: v for k, v in claimed.items() if v}
    if claimed != {k: v for k, v in splits.items() if v}:
        raise StoreError(
            f"{where}: the manifest counts {claimed} clips per split, its shards hold {dict(splits)}"
        )
    for source, counts in claimed_sources.items():
        if {k: v for k, v in counts.items() if v} != {
            k: v for k, v in sources.get(source, {}).items() if v
        }:
            raise StoreError(f"{where}: source {source!r} counts {counts}, its shards disagree")
    return manifest


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
        self.manifest = check_manifest(self.path, read_json(manifest_path))

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
        return [inside(self.path, s["file"], "shard file") for s in self.shards(splits, sources)]

    def dataset(self, splits=None, sources=None, cache_bytes: int = DEFAULT_CACHE_BYTES):
        """A torch Dataset over the rows of `splits` (default: the training splits, train and dev,
        that the store has)."""
        if splits is None:
            splits = [s for s in TRAIN_SPLITS if s in self.manifest["splits"]]
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
        """Check every shard against the manifest (presence, size, sha256, parquet footer, row
        count) and that every finished shard on disk is listed.

        Returns {"shards": n, "rows": n, "bytes": n}; raises StoreError naming each bad shard.
        """
        problems = []
        for shard in self.manifest["shards"]:
            problem = shard_problem(self.path, shard)
            if problem is None:
                try:
                    rows = pq.ParquetFile(self.path / shard["file"]).metadata.num_rows
                except Exception as err:  # noqa: BLE001 - a footer pyarrow cannot parse
                    problem = f"unreadable parquet ({err})"
                else:
                    if rows != shard["rows"]:
                        problem = f"holds {rows} rows, the manifest says {shard['rows']}"
            if problem:
                problems.append(f"{shard['file']}: {problem}")
        listed = {shard["file"] for shard in self.manifest["shards"]}
        on_disk = {
            p.relative_to(self.path).with_suffix(".parquet").as_posix()
            for p in (self.path / SHARDS).glob("*/*.json")
        }
        problems += [
            f"{name}: finished on disk but not in the manifest" for name in sorted(on_disk - listed)
        ]
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
        self._speech = (
            np.stack(
                [table.column("speech_start").to_numpy(), table.column("speech_end").to_numpy()],
                axis=1,
            )
            if table.num_rows
            else np.zeros((0, 2), np.float32)
        )
        self.training = False  # set by training: its collator then varies the labels
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
            "speech": (float(self._speech[i, 0]), float(self._speech[i, 1])),
            "training": self.training,
        }

    def grouped_order(self, seed: int = 0) -> list[int]:
        """A random order that visits row groups one at a time (shuffled groups, shuffled rows in
        each): nearly as random as a full shuffle for SGD, but every row group is decoded once."""
        rng = np.random.default_rng(seed)
        groups = []
        start = 0
        for bounds in self._group_starts:
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
