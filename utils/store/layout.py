"""The store's layout, row schema and file helpers: what every other store module agrees on.

    <store>/settings.json                                what the store is built with (first)
    <store>/shards/<source>/<split>-<index:05d>.parquet   rows of one shard
    <store>/shards/<source>/<split>-<index:05d>.json      its "done" record: sha256, rows, skipped
    <store>/manifest.json                                written last: the store is complete

Every file is written to a temporary name and moved into place with os.replace, so a process
killed at any moment leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path, PurePosixPath

import pyarrow as pa

from ..errors import StoreError

FORMAT = 2  # bump when the layout or the row schema changes incompatibly (2: speech bounds)
MANIFEST = "manifest.json"
SETTINGS = "settings.json"
SHARDS = "shards"
LOCK = ".lock"  # held by the one process writing the store (utils.store.lock)
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
# Source and split names become folder and file names: letters, digits, '.', '_', '-' only.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

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
        # where speech starts and ends in the clip (seconds): timestamp labels for training
        pa.field("speech_start", pa.float32(), nullable=False),
        pa.field("speech_end", pa.float32(), nullable=False),
    ]
)
# Everything but the features: small, read eagerly for the whole dataset.
LIGHT_COLUMNS = [
    "id",
    "source",
    "text",
    "labels",
    "n_frames",
    "pad_value",
    "speech_start",
    "speech_end",
]


def safe_name(name: str) -> str:
    """A source name usable as a directory name (anything outside [A-Za-z0-9._-] becomes '_')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"


def shard_stem(source: str, split: str, index: int) -> str:
    """Store-relative path of a shard without extension, e.g. 'shards/cv-sv-SE/train-00003'.

    A split name comes from outside (a manifest's split column): one that could leave the
    folder ('../x') is refused, never turned into a path."""
    if not NAME_RE.match(split):
        raise StoreError(f"split name {split!r}: only letters, digits, '.', '_' and '-' allowed")
    return f"{SHARDS}/{safe_name(source)}/{split}-{index:05d}"


def inside(store: Path, relative: str, what: str) -> Path:
    """`store / relative` when that stays inside the store (a manifest read from disk may be
    hand-edited: '../x' and absolute names are refused), else StoreError naming `what`."""
    parts = PurePosixPath(str(relative).replace("\\", "/")).parts
    if not relative or PurePosixPath(relative).is_absolute() or ".." in parts or ":" in relative:
        raise StoreError(f"{store}: {what} {relative!r} points outside the store")
    return store / relative


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def tmp_path(path: Path) -> Path:
    """A temporary name beside `path`; the pid keeps two writers from sharing one."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_json_atomic(path: str | Path, obj) -> None:
    """Write JSON to `path` via a temporary file and os.replace (all or nothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    text = json.dumps(obj, indent=1, ensure_ascii=False, default=str) + "\n"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: str | Path):
    """Parsed JSON of a file, or None when it does not exist or is not valid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def directory_bytes(path: str | Path) -> int:
    """Total size of the files under a directory."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
