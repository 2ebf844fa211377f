"""Finding the store a run trains on: a folder (copied off Google Drive first), a packed store
fetched with gdown, or, when none is named, the latest store notebook 01 made."""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from pathlib import Path

from ..errors import ConfigError, StoreError
from ..store import FeatureStore, copy_to_local, fetch_store, latest_store, read_json
from .config import TrainConfig

log = logging.getLogger(__name__)

# Where Colab mounts Google Drive. Random reads from there are slow (a network file system), so a
# store under it is copied to local disk before training by default.
DRIVE_ROOT = "/content/drive"
# A Drive file id as gdown takes it: 25+ characters of [A-Za-z0-9_-] (ids are 28-44 long).
DRIVE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{25,}$")
# How long the other processes of a machine wait for local rank 0 to fetch or copy the store.
WAIT_SECONDS = 6 * 3600.0


def is_on_drive(path: str | Path) -> bool:
    """True for a path under Colab's Google Drive mount."""
    return str(Path(path).expanduser().absolute()).startswith(DRIVE_ROOT + "/")


def store_spec(cfg: TrainConfig) -> str:
    """The store the run names, or the latest one notebook 01 made (ConfigError when none)."""
    if cfg.store is not None and str(cfg.store).strip():
        return str(cfg.store).strip()
    latest = latest_store()
    if latest is None:
        raise ConfigError(
            "TrainConfig.store: no store given and none made yet; run notebook 01 (or "
            "`python -m utils.featurize`) first, or set store to a store folder"
        )
    log.info("store: the latest one notebook 01 made, %s", latest)
    return str(latest)


def locate_store(spec: str) -> tuple[str, Path | None]:
    """("dir", path) for a store directory, ("fetch", None) for a .tar, Drive id or URL."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return "dir", path
    if path.is_file() or spec.startswith(("http://", "https://")) or DRIVE_ID_RE.match(spec):
        return "fetch", None
    raise FileNotFoundError(
        f"store={spec!r}: no such directory, and not a .tar file, an http(s) URL or a Drive file id"
    )


def _local_root(cfg: TrainConfig) -> Path:
    return Path(cfg.local_dir) if cfg.local_dir else Path(tempfile.gettempdir()) / "feature-stores"


def _local_rank() -> int:
    # Set by torchrun / accelerate launch for every process; 0 (or unset) on one process per machine.
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def wait_for_store(path: Path, manifest: dict | None = None, timeout: float = WAIT_SECONDS):
    """Wait until `path` holds a complete store (with this manifest, if given) and open it: what
    the other processes on a machine do while local rank 0 fetches or copies the store. The
    manifest is written last, so its presence means the copy is complete."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = read_json(path / "manifest.json")
        if found is not None and (manifest is None or found == manifest):
            return FeatureStore(path)
        time.sleep(1.0)
    raise StoreError(f"{path}: no complete store after {timeout:.0f} s (local rank 0 failed?)")


def open_store(cfg: TrainConfig, spec: str) -> tuple[FeatureStore, Path]:
    """The store `spec` names, fetched (gdown) or copied to local disk as configured. Under
    torchrun only local rank 0 downloads or copies; the other processes wait for its result.

    Returns (FeatureStore to read from, the store's own path: where the output folder goes).
    """
    kind, path = locate_store(spec)
    if kind == "fetch":
        name = (
            Path(spec).stem if Path(spec).is_file() else re.sub(r"[^A-Za-z0-9_-]", "_", spec)[-40:]
        )
        dest = _local_root(cfg) / name
        store = fetch_store(spec, dest) if _local_rank() == 0 else wait_for_store(dest)
        return store, store.path
    store = FeatureStore(path)
    copy = cfg.copy_to_local if cfg.copy_to_local is not None else is_on_drive(path)
    if copy:
        dest = _local_root(cfg) / path.name
        if _local_rank() != 0:
            return wait_for_store(dest, store.manifest), path
        log.info("copying the store %s to local disk (fast random reads) ...", path)
        start = time.perf_counter()
        store = copy_to_local(path, dest)
        log.info("  -> %s in %.1f s", store.path, time.perf_counter() - start)
    return store, path
