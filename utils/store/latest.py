"""Where stores live by default, and the pointer from notebook 01 to notebook 02.

Notebook 01 can write its store anywhere (a source name, a model name, augmentation: all change the
default path); notebook 02 must not guess it. When a store is complete, the feature pipeline
records its path in `<root>/latest-store.json`; training with no store given reads it back.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .layout import read_json, write_json_atomic

DRIVE_STORES = Path("/content/drive/MyDrive/whisper-features")  # Colab with Drive mounted
LOCAL_STORES = Path("runs/features")  # everywhere else, relative to the working directory
POINTER = "latest-store.json"
ROOT_ENV = "WHISPER_FEATURES_ROOT"  # overrides both (the tests point it at a temporary folder)


def default_root() -> Path:
    """Where stores go by default: $WHISPER_FEATURES_ROOT if set, else Google Drive when it is
    mounted (Colab), else runs/features."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV])
    return DRIVE_STORES if DRIVE_STORES.parent.is_dir() else LOCAL_STORES


def remember_latest(store: str | Path, root: str | Path | None = None) -> Path:
    """Record `store` as the latest complete store under `root`; returns the pointer file."""
    pointer = Path(root or default_root()) / POINTER
    write_json_atomic(
        pointer,
        {
            "store": str(Path(store).expanduser().resolve()),
            "at": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
    )
    return pointer


def latest_store(root: str | Path | None = None) -> Path | None:
    """The store notebook 01 (or `python -m utils.featurize`) completed last, if it still exists."""
    recorded = read_json(Path(root or default_root()) / POINTER)
    if not isinstance(recorded, dict) or not isinstance(recorded.get("store"), str):
        return None
    path = Path(recorded["store"])
    return path if path.is_dir() else None
