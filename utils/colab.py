"""What the notebooks do before their real work: install what is missing and mount Drive in Colab.

Each notebook's first code cell finds (or, in Colab, clones) this repository and puts it on
`sys.path`; then it calls `bootstrap(...)`, written once here. Outside Colab nothing is installed
or mounted: the machine was set up by `scripts/setup.sh`.

Colab preinstalls torch, numpy, transformers, datasets, gradio... and changing any of them under a
running kernel forces a runtime restart. So a notebook installs only the requirements of its own
sections of requirements.txt that are missing or too old, never touches a package Colab ships
(they are pinned to the installed versions while pip resolves), and leaves the kernel's own
packages (ipykernel, jupyter_client) alone.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

DRIVE_MOUNT = "/content/drive"  # where Colab mounts Google Drive
# Sections of requirements.txt ("# [features]" lines) each notebook needs: 01 never loads the app's
# gradio or CTranslate2, 03 never trains.
SECTIONS = {"01": ("features",), "02": ("features", "training"), "03": ("features", "app")}
# Never upgraded or downgraded by a notebook: Colab's own stack and the running kernel's packages.
# A too-old one is reported (with the version the project needs), not replaced.
KEEP = (
    "torch", "torchvision", "torchaudio", "numpy", "transformers", "datasets", "gradio",
    "gradio-client", "accelerate", "peft", "huggingface-hub", "tokenizers", "safetensors",
    "pandas", "ipykernel", "jupyter-client", "notebook", "google-colab",
)  # fmt: skip


def in_colab() -> bool:
    """True inside Google Colab (where `google.colab` is importable)."""
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):
        return False


def secret(name: str) -> str | None:
    """A Colab secret (the key icon in the side bar) or None: not in Colab, not set, or access
    not granted to this notebook."""
    if not in_colab():
        return None
    try:
        from google.colab import userdata

        return userdata.get(name) or None
    except Exception:  # noqa: BLE001 - SecretNotFoundError, NotebookAccessError, ...
        return None


def read_sections(requirements: Path, sections: tuple[str, ...]) -> list[str]:
    """The requirement lines of requirements.txt under the given "# [section]" headers."""
    lines, current = [], None
    for raw in requirements.read_text().splitlines():
        line = raw.strip()
        if header := re.fullmatch(r"#\s*\[(\w+)\].*", line):
            current = header.group(1)
        elif line and not line.startswith("#") and current in sections:
            lines.append(line)
    return lines


def plan_install(requirements: list[str], installed: dict[str, str]) -> tuple[list[str], list[str]]:
    """(to install, kept as they are) for `requirements`, given {name: version} installed.

    A requirement that is met is skipped; a missing or too-old one is installed, except a package
    in KEEP that is installed at all: that one is kept, with a line saying what the project wants.
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    install, kept = [], []
    for line in requirements:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        have = installed.get(name)
        if have is not None and req.specifier.contains(have, prereleases=True):
            continue
        if have is not None and name in KEEP:
            kept.append(f"{name} {have} (the project asks {req.specifier})")
            continue
        install.append(line)
    return install, kept


def installed_versions() -> dict[str, str]:
    """{canonical name: version} of every installed distribution."""
    from packaging.utils import canonicalize_name

    return {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in importlib.metadata.distributions()
        if d.metadata["Name"]
    }


def install_missing(requirements: Path, notebook: str) -> list[str]:
    """pip-install what `notebook` ("01", "02", "03") needs and lacks, with every installed KEEP
    package pinned to its version; returns what was installed."""
    installed = installed_versions()
    install, kept = plan_install(read_sections(requirements, SECTIONS[notebook]), installed)
    for line in kept:
        log.warning("kept Colab's %s: upgrading it would restart the runtime", line)
    if not install:
        log.info("all requirements of notebook %s are installed", notebook)
        return []
    with tempfile.TemporaryDirectory() as tmp:
        pins = Path(tmp) / "constraints.txt"
        pins.write_text("".join(f"{n}=={installed[n]}\n" for n in KEEP if n in installed))
        log.info("installing: %s", " ".join(install))
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "-c", str(pins), *install], check=True
        )
    return install


def bootstrap(repo: str | Path, mount_drive: bool = False, notebook: str = "03") -> bool:
    """Work from the repository folder; in Colab, install what `notebook` lacks (see
    install_missing) and mount Drive when asked. Returns whether this runs in Colab."""
    os.chdir(repo)  # the notebooks' default paths (data/, runs/) are relative to it
    colab = in_colab()
    if colab:
        install_missing(Path(repo) / "requirements.txt", notebook)
        if mount_drive:
            from google.colab import drive

            drive.mount(DRIVE_MOUNT)
    log.info("repository: %s; Colab: %s", repo, colab)
    return colab
