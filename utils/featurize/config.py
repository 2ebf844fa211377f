"""FeatureConfig: everything that decides what a feature store holds (plus how fast it is made).

Declared once: notebook 01's parameters cell and `python -m utils.featurize` follow from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..audio import SAMPLE_RATE
from ..augment import parse_augment
from ..config import coerce
from ..errors import ConfigError
from ..features import N_SAMPLES
from ..whisper_lang import check_task

MAX_DURATION = N_SAMPLES / SAMPLE_RATE  # 30 s: Whisper's window; longer clips would be truncated
# Examples per task sent to a worker: big enough to amortize pickling and queue round trips, small
# enough that the last tasks of a shard do not leave cores idle.
CHUNKSIZE = 8


@dataclass(frozen=True)
class FeatureConfig:
    """What a feature store holds; each field is a parameter of notebook 01."""

    # Common Voice dir or .tar.gz, .csv/.tsv manifest, "hf:<dataset>", or a list of them
    source: Any = "data/cv-corpus-sample/sv-SE"
    # Common Voice locale when `source` is a release root or archive, e.g. "sv-SE"
    locale: str | None = None
    # transcript language (Whisper name or code); None: the Common Voice locale's (English for an
    # English-only checkpoint)
    language: str | None = None
    # "transcribe" or "translate" (to English)
    task: str = "transcribe"
    # splits to extract, e.g. "train,dev,test"; None: each source's (train, dev, test)
    splits: tuple[str, ...] | None = None
    # keep this share of every split, e.g. 0.1 (a stable hash of seed + clip id picks them)
    fraction: float | None = None
    # keep at most this many clips per split, e.g. 10000
    count: int | None = None
    # which clips fraction picks, and the augmentation's draws
    seed: int = 0
    # store folder; None: Drive (Colab) or runs/features/<source>-<model>[-augmented]
    store: str | None = None
    # checkpoint whose feature extractor and tokenizer are used (hub id or local folder)
    model: str = "openai/whisper-small"
    # worker processes; None: all cores; 0: in this process
    workers: int | None = None
    # clips per shard: the unit of resume
    shard_size: int = 1000
    # longer clips are skipped (seconds, at most Whisper's 30)
    max_duration: float = MAX_DURATION
    # augment training clips: e.g. "on", "noise,speed", or {"copies": 2, "p": 0.5,
    # "speed_range": [0.8, 1.2]} (utils/augment.py); kept as AugmentConfig.to_dict()
    augment: Any = None
    # more source options, e.g. {"config": "sv-SE", "text_column": "sentence"}
    source_options: dict = field(default_factory=dict)
    # clips per worker task
    chunksize: int = CHUNKSIZE
    # recompute shard checksums on rerun (catches truncated/corrupted shards)
    verify: bool = True

    def __post_init__(self):
        def bad(name: str, why: str):
            raise ConfigError(f"FeatureConfig.{name}={getattr(self, name)!r}: {why}")

        coerce(self)
        # The convenient forms (one spec, a Path) normalised, so that settings compare equal.
        source = self.source
        if isinstance(source, str) and source.lstrip().startswith("["):  # a list from a CLI/YAML
            import yaml

            source = yaml.safe_load(source)
        if isinstance(source, (str, Path, dict)):
            source = (source,)
        object.__setattr__(
            self, "source", tuple(str(s) if isinstance(s, Path) else s for s in source)
        )
        if self.store is not None:
            object.__setattr__(self, "store", str(self.store))
        if not self.source:
            bad("source", "give at least one source")
        check_task(self.task, "FeatureConfig.task")
        if self.fraction is not None and not 0.0 < self.fraction <= 1.0:
            bad("fraction", "must be in (0, 1]")
        if self.count is not None and self.count < 1:
            bad("count", "must be an integer >= 1")
        if self.workers is not None and self.workers < 0:
            bad("workers", "must be >= 0 (0 runs in this process)")
        if self.shard_size < 1:
            bad("shard_size", "must be >= 1")
        if self.chunksize < 1:
            bad("chunksize", "must be >= 1")
        if not 0.0 < self.max_duration <= MAX_DURATION:
            bad("max_duration", f"must be in (0, {MAX_DURATION:g}] seconds (Whisper's window)")
        try:
            augment = parse_augment(self.augment, seed=self.seed)
        except ConfigError as err:  # its message starts with the parameter: augment.speed_range
            raise ConfigError(f"FeatureConfig.{err}") from None
        if augment is not None and augment.max_duration > self.max_duration:
            # a slowed copy must fit the same limit as the clips themselves
            augment = replace(augment, max_duration=self.max_duration)
        # a plain JSON-able dict: it goes to the workers and into the manifest's settings
        object.__setattr__(self, "augment", augment.to_dict() if augment else None)
