"""Progress messages through `logging`, printed by the first process only.

Library code logs to `logging.getLogger(__name__)` (a child of "utils") and never prints. This
module gives the "utils" logger one handler that writes plain messages to standard output, so
notebooks and command lines show them, and a filter that drops them in every process but rank 0
under torchrun / accelerate launch (each process would otherwise print the same line).
"""

from __future__ import annotations

import logging
import os
import sys

ROOT_LOGGER = "utils"


def rank() -> int:
    """This process's rank under torchrun / accelerate launch (0 when run alone)."""
    return int(os.environ.get("RANK", "0") or 0)


class _RankZero(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return rank() == 0


class _Stdout(logging.StreamHandler):
    """Writes to whatever sys.stdout is at the time (a notebook swaps it per cell)."""

    def __init__(self):
        super().__init__(sys.stdout)

    def emit(self, record):
        self.stream = sys.stdout
        super().emit(record)


def setup(level: int = logging.INFO) -> logging.Logger:
    """Give the "utils" logger its handler once (idempotent); return it."""
    logger = logging.getLogger(ROOT_LOGGER)
    if not any(isinstance(h, _Stdout) for h in logger.handlers):
        handler = _Stdout()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(_RankZero())
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False  # the message is shown once, not again by a root handler
    return logger
