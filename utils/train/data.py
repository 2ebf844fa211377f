"""From the store to training batches: the datasets of a run and the collator.

The store holds only the log-Mel frames that carry audio, in float16; the collator rebuilds each
clip's exact padded [n_mels, 3000] float32 window (utils.features.expand_log_mel, one pass per
row) and pads labels with -100 so the loss ignores padding.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

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

    Common Voice labels carry no timestamps and no previous text, so a model fine-tuned on them
    alone forgets both, which long-form transcription needs. For training items (not evaluation),
    a share `timestamp_share` of labels gets the clip's speech start and end as timestamp tokens
    instead of <|notimestamps|>, and a share `prompt_share` gets another clip's text before it as
    previous text (<|startofprev|> ..., not learned: -100); the batch then carries
    decoder_input_ids. (distil-whisper trains with 0.2 and 0.1.)
    """

    decoder_start_token_id: int
    n_frames: int = N_FRAMES
    no_timestamps_id: int | None = None  # <|notimestamps|>; the timestamps follow it
    prev_token_id: int | None = None  # <|startofprev|>
    timestamp_share: float = 0.0
    prompt_share: float = 0.0
    seed: int = 0
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)

    def __call__(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        sequences, starts = zip(*(self.sequence(items, b) for b in range(len(items))), strict=True)
        batch = {"input_features": self.features(items)}
        if any(starts):  # previous text in some rows: the decoder inputs are given, not shifted
            batch["decoder_input_ids"] = self._pad([s[:-1] for s in sequences], self.pad_id(items))
            batch["labels"] = self._pad(
                [[-100] * k + s[k + 1 :] for s, k in zip(sequences, starts, strict=True)], -100
            )
        else:
            batch["labels"] = self._pad([s[1:] for s in sequences], -100)
        return batch

    def pad_id(self, items) -> int:
        return items[0]["labels"][-1]  # <|endoftext|>, what Whisper pads with

    def sequence(self, items: Sequence[dict], b: int) -> tuple[list[int], int]:
        """The decoder sequence of item b (<|startoftranscript|> ... <|endoftext|>) and the index of
        its <|startoftranscript|> (0 unless previous text was put before it)."""
        ids = list(items[b]["labels"])
        if not ids or ids[0] != self.decoder_start_token_id:
            ids = [self.decoder_start_token_id, *ids]
        if not items[b].get("training") or self.no_timestamps_id is None:
            return ids, 0
        if (
            self.timestamp_share
            and self.rng.random() < self.timestamp_share
            and self.no_timestamps_id in ids
        ):
            start, end = (min(t, 30.0) for t in items[b]["speech"])
            first = self.no_timestamps_id + 1 + round(start / 0.02)  # <|0.00|> follows it
            last = max(first, self.no_timestamps_id + 1 + round(end / 0.02))
            i = ids.index(self.no_timestamps_id)
            ids = [*ids[:i], first, *ids[i + 1 : -1], last, ids[-1]]
        if (
            self.prompt_share
            and self.prev_token_id is not None
            and len(items) > 1
            and self.rng.random() < self.prompt_share
        ):
            other = items[(b - 1) % len(items)]["labels"]  # another clip's text
            prompt = [self.prev_token_id, *(t for t in other if t < self.pad_id(items))]
            return [*prompt, *ids], len(prompt)
        return ids, 0

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
        """The labels of an evaluation batch (no timestamps, no previous text added)."""
        return self._pad(
            [self.sequence([{**it, "training": False}], 0)[0][1:] for it in items], -100
        )

    @staticmethod
    def _pad(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
        out = np.full((len(rows), max(len(r) for r in rows)), value, dtype=np.int64)
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
    train.training = True  # its items get timestamp labels and previous text (the collator)
    evaluation = store.dataset([cfg.eval_split], sources=sources, cache_bytes=cache)
    for rows, what in ((train, "training"), (evaluation, "evaluation")):
        if len(rows) == 0:
            raise StoreError(f"store {store.path}: no {what} rows for sources={sources}")
    stored = sum(s["bytes"] for s in store.shards(train_splits, sources))
    grouped = stored * DECODED_BYTES_FACTOR > cache
    return train, first_rows(evaluation, cfg.eval_max_samples), grouped
