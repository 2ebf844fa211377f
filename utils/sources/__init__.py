"""Where the clips come from: Common Voice releases, Hub datasets and your own manifests.

Every source yields the same `Example` (id, split, text, audio, source), lazily and in a fixed
order, so the feature pipeline never needs to know where a clip came from. See `spec.py` for the
spec forms `open_source` takes.
"""

from ..errors import SourceError
from .archive import extract_archive
from .base import Example, Source, subsample
from .common_voice import CommonVoiceSource
from .hub import HubSource
from .manifest import ManifestSource
from .spec import combine, open_source, parse_spec

__all__ = [
    "CommonVoiceSource",
    "Example",
    "HubSource",
    "ManifestSource",
    "Source",
    "SourceError",
    "combine",
    "extract_archive",
    "open_source",
    "parse_spec",
    "subsample",
]
