"""Common Voice archives (.tar.gz as Mozilla Data Collective serves them), extracted once.

The extraction lands in a hidden folder beside the cache and is renamed into place after a marker
recording the archive's size and mtime, so a rerun reuses a complete extraction, a killed one
leaves nothing that looks complete, and a changed archive is extracted again. Members are checked
by utils.archives: files and folders only.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..archives import safe_extract
from ..errors import SourceError

# Written inside an extracted archive once every member is on disk; its absence means "redo".
EXTRACTED_MARKER = ".extracted.json"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")


def is_archive(path: Path) -> bool:
    """True for a file name with a tar suffix."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _stamp(archive: Path) -> dict[str, Any]:
    st = archive.stat()
    return {"archive": archive.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def extract_archive(archive: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Extract a (Common Voice) tar archive once and return the extracted directory.

    The default cache is `<archive>.extracted/` beside the archive (in Colab, pass a cache_dir on
    local disk rather than on Drive). A cache_dir that holds anything else is refused, never
    emptied. Links, devices, absolute names and '..' are refused (utils.archives).
    """
    archive = Path(archive)
    if not archive.is_file():
        raise SourceError(f"archive not found: {archive}")
    target = Path(cache_dir) if cache_dir else archive.with_name(archive.name + ".extracted")
    stamp = _stamp(archive)
    marker = target / EXTRACTED_MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == stamp:
                return target
        except ValueError:
            pass  # unreadable marker: extract again
    if target.exists() and not marker.is_file() and any(target.iterdir()):
        raise SourceError(
            f"cache_dir {target} is not empty and is not an extraction of {archive.name}; "
            "choose a new or empty folder"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*"):  # left by a killed extraction
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        safe_extract(archive, tmp, SourceError)
        (tmp / EXTRACTED_MARKER).write_text(json.dumps(stamp))
        if target.exists():
            shutil.rmtree(target)  # empty, or our extraction of an older archive (checked above)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
