"""Kill a real process mid-run, the way a Colab disconnect or an out-of-memory kill does."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def session_processes(sid: int) -> list[int]:
    """Live (non-zombie) processes of a session: a pipeline, its forkserver and workers."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def kill_when(
    cmd: list[str], cwd: Path, ready: Callable[[], bool], whole_group: bool, timeout: float = 600
) -> list[int]:
    """Start cmd in its own session and SIGKILL it as soon as ready() holds.

    whole_group=False kills the process alone (like a dying notebook kernel: its pool is orphaned)
    and returns the session's processes still alive 20 s later (they should have noticed and
    exited); whole_group=True kills every process of the session at once.
    """
    proc = subprocess.Popen(
        cmd, cwd=cwd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "timed out waiting for the moment to kill"
            time.sleep(0.005)
        if whole_group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while session_processes(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        return session_processes(proc.pid)
    finally:
        for pid in session_processes(proc.pid):
            os.kill(pid, signal.SIGKILL)
