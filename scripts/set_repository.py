"""Point the Colab badges and the notebooks' `repo_url` at this repository (or a fork of it).

The repository is named in three notebooks and README.md (badges that open a notebook in Colab,
and the `repo_url` a notebook clones when it runs alone in Colab). This script is the one place
that sets it: OWNER/REPO from the argument, else from `git remote get-url origin`.

    python scripts/set_repository.py               # from the git remote
    python scripts/set_repository.py alice/whisper-finetune
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FILES = (
    "README.md",
    "01_feature_pipeline.ipynb",
    "02_training_pipeline.ipynb",
    "03_inference_app.ipynb",
)
NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+?"  # OWNER/REPO as GitHub spells them
# Every place a file names the repository: the Colab badge link and the git URL to clone.
PATTERNS = (
    re.compile(rf"(colab\.research\.google\.com/github/)({NAME})(/blob/)"),
    re.compile(rf"(https://github\.com/)({NAME})(\.git)"),
)


def from_remote(root: Path = REPO) -> str:
    """OWNER/REPO of `git remote get-url origin` (https or ssh form)."""
    url = subprocess.run(
        ["git", "-C", str(root), "remote", "get-url", "origin"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    match = re.search(rf"github\.com[:/]({NAME})(?:\.git)?/?$", url)
    if not match:
        raise SystemExit(f"no GitHub remote 'origin' ({url or 'none'}): pass OWNER/REPO")
    return match.group(1)


def named(root: Path = REPO) -> set[str]:
    """Every OWNER/REPO the files name (one, once set)."""
    return {m.group(2) for f in FILES for p in PATTERNS for m in p.finditer((root / f).read_text())}


def set_repository(name: str, root: Path = REPO) -> list[str]:
    """Write `name` into every place; returns the files that changed."""
    if not re.fullmatch(NAME, name):
        raise SystemExit(f"{name!r} is not OWNER/REPO")
    changed = []
    for f in FILES:
        text = (root / f).read_text()
        new = text
        for pattern in PATTERNS:
            new = pattern.sub(lambda m: m.group(1) + name + m.group(3), new)
        if new != text:
            (root / f).write_text(new)
            changed.append(f)
    return changed


if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) > 1 else from_remote()
    print(f"{name}: changed {set_repository(name) or 'nothing'}")
