"""What every source yields: `Example`s in named splits, in a fixed order; and subsampling.

Audio is *not* decoded here: an Example carries a file path or the encoded bytes, and the feature
pipeline's workers decode it (a missing or broken file is then reported as unreadable and skipped,
never stopping the run).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import SourceError
from ..whisper_lang import DEFAULT_SPLITS

# Source names become directory names in the store (shards/<source>/...), so keep them portable.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Example:
    """One clip to featurize."""

    id: str  # unique within its source (Common Voice: clip file stem)
    split: str  # "train" | "dev" | "test" (Hub "validation" maps to "dev")
    text: str  # transcript; "" passes through (the pipeline skips it with a reason)
    audio: str | bytes  # a file path, or encoded bytes (Hub parquet rows); decoded in workers
    source: str  # short name, e.g. "cv-sv-SE"; used in store paths and the manifest


class Source:
    """What `open_source` returns: a named collection of splits of Examples."""

    name: str

    def splits(self) -> list[str]:
        """The split names this source yields, e.g. ["train", "dev", "test"]."""
        raise NotImplementedError

    def examples(self, split: str) -> Iterator[Example]:
        """Yield the Examples of one split lazily, in the same order every time."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """A JSON-able description of where the data came from (for the store's manifest)."""
        return {"name": self.name, "kind": type(self).__name__}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} splits={self.splits()}>"

    def _check_split(self, split: str) -> None:
        if split not in self.splits():
            raise SourceError(
                f"source {self.name!r} has no split {split!r}; it has {self.splits()}"
            )


def check_name(name: str, what: str) -> str:
    """`name` if it can be a folder name in the store, else SourceError saying where it came from."""
    if not NAME_RE.match(name):
        raise SourceError(
            f"source name {name!r} (from {what}) must be letters, digits, '.', '_' or '-' "
            "since it becomes a folder in the store; pass name=..."
        )
    return name


def slug(text: str) -> str:
    """A portable source name from free text (repo ids, file stems)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._") or "source"


def order_splits(names: Iterable[str]) -> list[str]:
    """train, dev, test first (in that order), then any others alphabetically."""
    names = set(names)
    known = [s for s in DEFAULT_SPLITS if s in names]
    return known + sorted(names - set(known))


def hash_unit(*parts: object) -> float:
    """A stable number in [0, 1) from the parts (same on every machine and Python run)."""
    digest = hashlib.blake2b("\x00".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def subsample(
    examples: Iterable[Example],
    fraction: float | None = None,
    count: int | None = None,
    seed: int = 0,
) -> Iterator[Example]:
    """Keep a deterministic subset, streaming (nothing is read ahead).

    fraction keeps an example when a hash of (seed, source, id) falls below it, so the choice of a
    clip never depends on the order or on the other clips; count then keeps the first `count` of
    those (alone, it is simply the first `count` in the source's order). Apply it per split.
    """
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise SourceError(f"fraction={fraction!r} must be a number in (0, 1]")
        if not 0.0 < fraction <= 1.0:
            raise SourceError(f"fraction={fraction!r} must be in (0, 1]")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise SourceError(f"count={count!r} must be an integer >= 1")
    return _subsample(iter(examples), fraction, count, seed)


def _subsample(
    examples: Iterator[Example], fraction: float | None, count: int | None, seed: int
) -> Iterator[Example]:
    kept = 0
    for ex in examples:
        if (
            fraction is not None
            and fraction < 1.0
            and hash_unit(seed, ex.source, ex.id) >= fraction
        ):
            continue
        yield ex
        kept += 1
        if count is not None and kept >= count:
            return  # stop without pulling one more example from a (possibly streaming) source
