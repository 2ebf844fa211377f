"""One writer per folder: a lock file that names its holder.

Two feature pipelines on one store would delete each other's temporary files; two trainings in
one output folder would resume from each other's checkpoints. `hold(folder)` takes an exclusive
`fcntl` lock on `<folder>/.lock` for the duration of a `with` block and writes the holder (host,
pid, command, since) into it; a second process is refused at once with a message naming the
holder. The lock is the kernel's, so it is released when the holder dies, even by SIGKILL: a
killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from ..errors import StoreError
from .layout import LOCK


@contextlib.contextmanager
def hold(folder: str | Path, what: str = "store", error: type = StoreError):
    """Hold `<folder>/.lock` exclusively for the block, or raise `error` naming the holder."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK, "a+")  # noqa: SIM115 - held for the block
    except OSError as err:
        raise error(f"{folder}: cannot write the {what} here ({err.strerror or err})") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise error(
                f"{folder}: this {what} is in use by {holder}; wait for it to finish, or use "
                f"another folder"
            ) from None
        holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "command": " ".join(sys.argv)[:200],
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(holder))
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock
