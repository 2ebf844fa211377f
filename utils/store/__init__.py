"""The feature store: compact log-Mel features and labels in parquet shards, plus a manifest.

The feature pipeline writes it (`writer`), training reads it (`reader`), `transfer` packs, fetches
and copies it, `latest` points notebook 02 at notebook 01's store, `lock` keeps one writer at a
time. See `layout` for the files on disk.
"""

from ..errors import StoreError
from .latest import default_root, latest_store, remember_latest
from .layout import (
    FORMAT,
    MANIFEST,
    SCHEMA,
    SETTINGS,
    SHARDS,
    directory_bytes,
    read_json,
    safe_name,
    sha256_file,
    shard_stem,
    write_json_atomic,
)
from .lock import hold
from .reader import FeatureDataset, FeatureStore, RowGroupSampler
from .transfer import copy_to_local, fetch_store, pack_store, unpack_store
from .writer import (
    check_free_space,
    done_shard,
    remove_shard,
    remove_tmp_files,
    rows_to_table,
    shard_problem,
    write_manifest,
    write_shard,
)

__all__ = [
    "check_free_space",
    "FORMAT",
    "MANIFEST",
    "SCHEMA",
    "SETTINGS",
    "SHARDS",
    "FeatureDataset",
    "FeatureStore",
    "RowGroupSampler",
    "StoreError",
    "copy_to_local",
    "default_root",
    "directory_bytes",
    "done_shard",
    "fetch_store",
    "hold",
    "latest_store",
    "pack_store",
    "read_json",
    "remember_latest",
    "remove_shard",
    "remove_tmp_files",
    "rows_to_table",
    "safe_name",
    "sha256_file",
    "shard_problem",
    "shard_stem",
    "unpack_store",
    "write_json_atomic",
    "write_manifest",
    "write_shard",
]
