"""What the notebooks do before their real work: install what is missing and mount Drive in Colab.

Each notebook's first code cell finds (or, in Colab, clones) this repository and puts it on
`sys.path`; then it calls `bootstrap(...)`, written once here. Outside Colab nothing is installed
or mounted: the machine was set up by `scripts/setup.sh`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

DRIVE_MOUNT = "/content/drive"  # where Colab mounts Google Drive


def in_colab() -> bool:
    """True inside Google Colab (where `google.colab` is importable)."""
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):
        return False


def bootstrap(repo: str | Path, mount_drive: bool = False) -> bool:
    """Work from the repository folder; in Colab, pip-install the requirements and mount Drive
    when asked. Returns whether this runs in Colab."""
    os.chdir(repo)  # the notebooks' default paths (data/, runs/) are relative to it
    colab = in_colab()
    if colab:
        requirements = Path(repo) / "requirements.txt"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "-r", str(requirements)], check=True
        )
        if mount_drive:
            from google.colab import drive

            drive.mount(DRIVE_MOUNT)
    log.info("repository: %s; Colab: %s", repo, colab)
    return colab
