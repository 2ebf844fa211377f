"""Writing a store: shards (parquet, then a done record), and the manifest last.

A shard counts as done only when its record exists and the parquet file's sha256 matches the
record; anything else is extracted again by the feature pipeline. The store knows nothing of how
features are made: the feature pipeline hands it rows.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StoreError
from .layout import (
    COMPRESSION,
    MANIFEST,
    ROW_GROUP_ROWS,
    SCHEMA,
    directory_bytes,
    inside,
    read_json,
    sha256_file,
    shard_stem,
    tmp_path,
    write_json_atomic,
)

# What one clip costs in a store, at most: a 5-second Common Voice clip's 500 frames x 80 mels in
# float16 (80 KB) before compression; stores measure ~35 KB a clip (benchmarks/RESULTS.md).
BYTES_PER_CLIP = 80_000


def check_free_space(
    store: str | Path, clips: int, n_mels: int = 80, free: int | None = None
) -> int:
    """Stop before writing when the store's disk (a Google Drive quota, in Colab) cannot hold
    `clips` more clips; returns the estimate in bytes. `free` overrides the disk's own figure."""
    need = clips * BYTES_PER_CLIP * n_mels // 80
    if Path(store).is_dir():  # a resumed run: what is written already needs no new space
        need = max(0, need - directory_bytes(store))
    where = Path(store).absolute()
    while not where.exists():  # the store folder may not be made yet
        where = where.parent
    free = shutil.disk_usage(where).free if free is None else free
    if free < need:
        drive = (
            " (your Google Drive quota: free space on drive.google.com)"
            if "/drive/" in str(Path(store).absolute())
            else ""
        )
        raise StoreError(
            f"{store}: {clips} clips need about {need / 1e6:,.0f} MB, only {free / 1e6:,.0f} MB "
            f"is free there{drive}; free space, choose another store folder, or keep fewer clips "
            "(fraction=..., count=...)"
        )
    return need


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
    tmp = tmp_path(parquet)
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
    """What is wrong with a shard's parquet file compared with its record, or None if intact."""
    path = inside(Path(store), record.get("file", ""), "shard file")
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
    stem = shard_stem(source, split, index)
    record = read_json(Path(store) / f"{stem}.json")
    if record is None:
        return None, None
    if record.get("file") != f"{stem}.parquet":  # a record must describe its own shard
        return None, f"its record names {record.get('file')!r}"
    problem = shard_problem(store, record)
    return (None, problem) if problem else (record, None)


def remove_shard(store: str | Path, source: str, split: str, index: int) -> None:
    """Delete a shard's record (first: it is what marks the shard done) and its parquet file."""
    stem = Path(store) / shard_stem(source, split, index)
    for suffix in (".json", ".parquet"):
        stem.with_suffix(suffix).unlink(missing_ok=True)


def remove_tmp_files(store: str | Path) -> int:
    """Delete temporary files left by killed writers (the caller holds the store's lock)."""
    found = list(Path(store).rglob(".*.tmp"))
    for tmp in found:
        tmp.unlink(missing_ok=True)
    return len(found)


def write_manifest(store: str | Path, manifest: dict) -> None:
    """Write manifest.json atomically: the last write of a run, marking the store complete."""
    write_json_atomic(Path(store) / MANIFEST, manifest)
