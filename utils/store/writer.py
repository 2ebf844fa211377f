"""Writing a store: shards (parquet, then a done record), and the manifest last.

A shard counts as done only when its record exists and the parquet file's sha256 matches the
record; anything else is extracted again by the feature pipeline. The store knows nothing of how
features are made: the feature pipeline hands it rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .layout import (
    COMPRESSION,
    MANIFEST,
    ROW_GROUP_ROWS,
    SCHEMA,
    inside,
    read_json,
    sha256_file,
    shard_stem,
    tmp_path,
    write_json_atomic,
)


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
