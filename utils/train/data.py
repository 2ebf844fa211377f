"""From the store to training batches: the datasets of a run and the collator.

The store holds only the log-Mel frames that carry audio, in float16; the collator rebuilds each
clip's exact padded [n_mels, 3000] float32 window (utils.features.expand_log_mel, one pass per
row) and pads labels with -100 so the loss ignores padding.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import StoreError
from ..features import N_FRAMES, expand_log_mel
from .config import TrainConfig

log = logging.getLogger(__name__)

# The store decodes zstd-compressed float16 frames to ~1.3x their on-disk size; 1.5 leaves margin.
DECODED_BYTES_FACTOR = 1.5
# The reader keeps this much decoded feature data in memory in total (split among DataLoader
# workers): a training set that fits is read from disk once, whatever the order.
FEATURE_CACHE_BYTES = 2 << 30


@dataclass
class WhisperStoreCollator:
    """Turns store items into a Whisper training batch.

    input_features: float32 [B, n_mels, 3000], the exact padded log-Mel window of each item.
    labels: int64 [B, L], the token ids without the leading <|startoftranscript|> (the model
    prepends `decoder_start_token_id` itself when it shifts labels right), padded with -100.
    """

    decoder_start_token_id: int
    n_frames: int = N_FRAMES

    def __call__(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        return {"input_features": self.features(items), "labels": self.labels(items)}

    def features(self, items: Sequence[dict]) -> torch.Tensor:
        n_mels = items[0]["features"].shape[0]
        out = np.empty((len(items), n_mels, self.n_frames), dtype=np.float32)
        for b, item in enumerate(items):
            if item["features"].shape[0] != n_mels:
                raise StoreError(
                    f"item {item.get('id', b)!r} has {item['features'].shape[0]} mel bins, the batch {n_mels}"
                )
            expand_log_mel(item["features"], item["pad_value"], self.n_frames, out=out[b])
        return torch.from_numpy(out)

    def labels(self, items: Sequence[dict]) -> torch.Tensor:
        rows = []
        for item in items:
            ids = item["labels"]
            if len(ids) and ids[0] == self.decoder_start_token_id:
                ids = ids[1:]
            rows.append(ids)
        out = np.full((len(rows), max(len(r) for r in rows)), -100, dtype=np.int64)
        for b, ids in enumerate(rows):
            out[b, : len(ids)] = ids
        return torch.from_numpy(out)


def first_rows(dataset, n: int | None):
    """The first n rows of a dataset (all when n is None)."""
    if n is None or n >= len(dataset):
        return dataset
    return torch.utils.data.Subset(dataset, range(n))


def load_datasets(store, cfg: TrainConfig, workers: int):
    """(train, eval, grouped): the store's training and evaluation rows, and whether training
    should read row group by row group (the training set is larger than the reader's cache).

    Training splits the store lacks (e.g. no dev split in a manifest of one's own recordings) are
    left out with a note; the evaluation split must exist.
    """
    have = store.manifest.get("splits", {})
    train_splits = [s for s in cfg.train_splits if have.get(s)]
    if not train_splits:
        raise StoreError(
            f"store {store.path}: no rows in train_splits={list(cfg.train_splits)} (it has {have})"
        )
    if len(train_splits) < len(cfg.train_splits):
        missing = sorted(set(cfg.train_splits) - set(train_splits))
        log.info("note: store %s has no %s rows; training on %s", store.path, missing, train_splits)
    if not have.get(cfg.eval_split):
        raise StoreError(
            f"store {store.path}: no rows in eval_split={cfg.eval_split!r} (it has {have})"
        )
    cache = FEATURE_CACHE_BYTES // max(1, workers)
    sources = list(cfg.sources) if cfg.sources else None
    train = store.dataset(train_splits, sources=sources, cache_bytes=cache)
    evaluation = store.dataset([cfg.eval_split], sources=sources, cache_bytes=cache)
    for rows, what in ((train, "training"), (evaluation, "evaluation")):
        if len(rows) == 0:
            raise StoreError(f"store {store.path}: no {what} rows for sources={sources}")
    stored = sum(s["bytes"] for s in store.shards(train_splits, sources))
    grouped = stored * DECODED_BYTES_FACTOR > cache
    return train, first_rows(evaluation, cfg.eval_max_samples), grouped
