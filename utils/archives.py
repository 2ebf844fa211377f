"""Unpacking tar archives from strangers: regular files and folders only, inside the target.

Common Voice releases and packed feature stores hold nothing but files and folders. Any other
member is refused before anything is written: symbolic and hard links (a chain of links with
innocent names is how CVE-2025-4517 escapes tarfile's "data" filter on older Pythons), devices,
FIFOs, absolute names, names with '..' or a drive letter. What is extracted is capped in total size
when a cap is given (a small .tar.gz can expand to fill a disk).
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path, PurePosixPath

from .errors import PipelineError


def check_member(archive: Path, member: tarfile.TarInfo, error: type[PipelineError]) -> None:
    """Raise `error` naming the archive and member unless it is a plain file or folder inside."""
    name = member.name
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise error(f"{archive}: refusing unsafe member {name!r} (absolute path or '..')")
    if not (member.isfile() or member.isdir()):
        kind = "link" if member.issym() or member.islnk() else "special file"
        raise error(
            f"{archive}: refusing unsafe member {name!r}: a {kind} (only files and folders are extracted)"
        )


def safe_extract(
    archive: Path, dest: Path, error: type[PipelineError], max_bytes: int | None = None
) -> list[str]:
    """Extract `archive` (any tar compression) into the existing folder `dest` in one pass,
    refusing unsafe members and stopping once more than `max_bytes` would be written.
    Returns the member names. The caller removes `dest` when this raises."""
    names, total = [], 0
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:  # one pass: a .tar.gz is decompressed only once
                check_member(archive, member, error)
                total += member.size if member.isfile() else 0
                if max_bytes is not None and total > max_bytes:
                    raise error(
                        f"{archive}: unpacks to more than {max_bytes / 1e6:,.0f} MB; refused"
                    )
                tar.extract(member, dest, filter="data")
                names.append(member.name)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise error(f"{archive}: cannot extract it ({err})") from err
    return names
