"""The feature pipeline: sources -> decoded audio -> exact compact log-Mel + labels -> store.

Every core decodes and featurizes clips in a process pool while this process reads the sources,
tokenizes transcripts and writes shards in order. Example k of a (source, split) goes into shard
k // shard_size; a shard is written (parquet, then its done record) only once all its examples are
processed, so a run killed at any moment resumes at the first unfinished shard with no clip
duplicated or lost. Clips that cannot be used are skipped with a reason and never stop the run.
One run at a time per store: a second is refused naming the first (utils.store.hold).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, deque
from itertools import islice
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import store as st
from ..errors import ConfigError
from ..features import MAX_LABEL_TOKENS, label_ids, load_checkpoint, set_label_prefix
from ..sources import HubSource, Source, combine, subsample
from .config import FeatureConfig
from .report import summarize
from .settings import check_settings, comparable, make_settings, run_language, store_path
from .workers import (
    EMPTY_TRANSCRIPT,
    LABELS_TOO_LONG,
    featurize_batch,
    init_worker,
    make_pool,
    skip,
    start_forkserver,
)

log = logging.getLogger(__name__)

# Tasks in flight per worker: keeps every core busy while bounding memory (a streamed Hub source
# is never read far ahead of the workers).
TASKS_PER_WORKER = 4


def _batched(iterable, n: int):
    iterator = iter(iterable)
    while batch := list(islice(iterator, n)):
        yield batch


def _plan(cfg: FeatureConfig, sources: list[Source]) -> dict:
    """{source name: [splits]} to extract."""
    plan = {}
    for source in sources:
        have = source.splits()
        if cfg.splits is None:
            plan[source.name] = list(have)
        else:
            missing = [s for s in cfg.splits if s not in have]
            if missing:
                raise ConfigError(
                    f"source {source.name!r} has no split(s) {missing} (it has {have})"
                )
            plan[source.name] = list(cfg.splits)
    return plan


def _examples(cfg: FeatureConfig, source: Source, split: str):
    return subsample(source.examples(split), fraction=cfg.fraction, count=cfg.count, seed=cfg.seed)


def _count_examples(cfg: FeatureConfig, sources: list[Source], plan: dict) -> int | None:
    # Reading a TSV or CSV twice costs nothing; a Hub dataset is not read twice for a progress bar.
    if any(isinstance(source, HubSource) for source in sources):
        return None
    return sum(sum(1 for _ in _examples(cfg, s, split)) for s in sources for split in plan[s.name])


def _prepare(example, tokenizer) -> tuple:
    """(example, labels, pre-skip): transcript checks run here, before any audio is decoded."""
    text = example.text.strip() if example.text else ""
    if not text:
        return (
            example,
            None,
            skip(EMPTY_TRANSCRIPT, f"{example.source}/{example.id}: empty transcript"),
        )
    labels = label_ids(tokenizer, text)
    if len(labels) > MAX_LABEL_TOKENS:
        detail = f"{example.source}/{example.id}: {len(labels)} label tokens, over the decoder's {MAX_LABEL_TOKENS}"
        return example, None, skip(LABELS_TOO_LONG, detail)
    return example, labels, None


class _Shard:
    """A shard being filled: its examples' results arrive in order, task by task."""

    def __init__(self, source: str, split: str, index: int, examples: list, tasks: int, slot: int):
        self.source, self.split, self.index = source, split, index
        self.examples, self.waiting, self.slot = examples, tasks, slot
        self.results: list[dict] = []

    def write(self, store: Path) -> dict:
        rows, skipped = [], []
        for example, result in zip(self.examples, self.results, strict=True):
            if "rows" in result:
                rows.extend(result["rows"])
            else:
                skipped.append(
                    {"id": example.id, "reason": result["skip"], "detail": result["detail"]}
                )
        return st.write_shard(
            store, self.source, self.split, self.index, rows, skipped, examples=len(self.examples)
        )


def _done(store: Path, source: str, split: str, index: int, verify: bool):
    if verify:
        return st.done_shard(store, source, split, index)
    record = st.read_json(store / f"{st.shard_stem(source, split, index)}.json")
    return record if record and (store / record["file"]).is_file() else None, None


def _extract(cfg: FeatureConfig, store: Path, sources: list[Source], plan: dict, processor):
    """Process every (source, split) shard that is not done.

    Returns (every shard's record in store order, how many shards were done already).
    """
    workers = (os.cpu_count() or 1) if cfg.workers is None else cfg.workers
    filters = np.asarray(processor.feature_extractor.mel_filters, dtype=np.float32)
    initargs = (filters, cfg.max_duration, cfg.augment)
    pool = make_pool(workers, (*initargs, True)) if workers > 0 else None
    if pool is None:
        init_worker(*initargs, False)
    reused = 0
    slots: list = []  # records and _Shards in store order; _Shards become records once written
    pending: deque = deque()  # (shard, async result or results) in submission order
    window = max(1, workers) * TASKS_PER_WORKER
    total = _count_examples(cfg, sources, plan)
    if total is not None:
        copies = 1 + cfg.augment.get("copies", 1) if cfg.augment else 1  # augmented copies too
        st.check_free_space(store, total * copies, processor.feature_extractor.feature_size)
    bar = tqdm(total=total, unit="clip", desc="features", mininterval=1.0)

    def collect_one() -> None:
        shard, task = pending.popleft()
        results = task.get() if pool is not None else task
        shard.results.extend(results)
        bar.update(len(results))
        shard.waiting -= 1
        if shard.waiting == 0:
            slots[shard.slot] = shard.write(store)

    try:
        for source in sources:
            for split in plan[source.name]:
                batches = _batched(_examples(cfg, source, split), cfg.shard_size)
                for index, examples in enumerate(batches):
                    record, problem = _done(store, source.name, split, index, cfg.verify)
                    if problem:
                        name = st.shard_stem(source.name, split, index) + ".parquet"
                        log.info("%s: %s; extracting it again", store / name, problem)
                        st.remove_shard(store, source.name, split, index)
                    if record is not None and record.get("examples") == len(examples):
                        reused += 1
                        slots.append(record)
                        bar.update(len(examples))
                        continue
                    jobs = [_prepare(example, processor.tokenizer) for example in examples]
                    tasks = list(_batched(jobs, cfg.chunksize))
                    shard = _Shard(source.name, split, index, examples, len(tasks), slot=len(slots))
                    slots.append(shard)
                    for task in tasks:
                        while len(pending) >= window:
                            collect_one()
                        submitted = (
                            pool.apply_async(featurize_batch, (task,))
                            if pool
                            else featurize_batch(task)
                        )
                        pending.append((shard, submitted))
        while pending:
            collect_one()
        if pool is not None:
            pool.close()
            pool.join()
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    return slots, reused


def build_manifest(settings: dict, plan: dict, records: list[dict]) -> dict:
    """The store's manifest from its shards' records (same records -> same manifest, byte for byte)."""
    splits: dict[str, int] = {}
    per_source: dict[str, dict[str, int]] = {}
    seconds: dict[str, float] = {}
    for source, source_splits in plan.items():
        per_source[source] = dict.fromkeys(source_splits, 0)
        for split in source_splits:
            splits.setdefault(split, 0)
            seconds.setdefault(split, 0.0)
    skipped: Counter = Counter()
    skipped_clips = []
    for record in records:
        splits[record["split"]] += record["rows"]
        per_source[record["source"]][record["split"]] += record["rows"]
        seconds[record["split"]] += record.get("seconds", 0.0)
        for clip in record["skipped"]:
            skipped[clip["reason"]] += 1
            skipped_clips.append(
                {"id": clip["id"], "split": record["split"], "source": record["source"], **clip}
            )
    shards = [
        {k: record[k] for k in ("file", "split", "source", "rows", "sha256", "bytes")}
        for record in records
    ]
    return {
        "format": st.FORMAT,
        "settings": settings,
        "splits": splits,
        "sources": per_source,
        "seconds": {split: round(value, 3) for split, value in seconds.items()},
        "skipped": dict(sorted(skipped.items())),
        "skipped_clips": skipped_clips,
        "shards": shards,
        "bytes": sum(s["bytes"] for s in shards),
    }


def _complete_store(store: Path, settings: dict, verify: bool) -> dict | None:
    """The manifest of a complete store built with `settings` whose shards are all intact, else
    None (damaged shards are named and removed so that they are extracted again)."""
    manifest = st.read_json(store / st.MANIFEST)
    if not isinstance(manifest, dict) or comparable(manifest.get("settings", {})) != comparable(
        settings
    ):
        return None
    damaged = []
    for shard in manifest["shards"]:
        if verify:
            problem = st.shard_problem(store, shard)
        else:
            problem = None if (store / shard["file"]).is_file() else "missing"
        if problem:
            damaged.append(shard)
            log.info("%s: %s; extracting it again", store / shard["file"], problem)
    if not damaged:
        return manifest
    (store / st.MANIFEST).unlink(missing_ok=True)
    for shard in damaged:
        index = int(Path(shard["file"]).stem.rsplit("-", 1)[1])
        st.remove_shard(store, shard["source"], shard["split"], index)
    return None


def run_feature_pipeline(cfg: FeatureConfig) -> dict:
    """Build (or finish, or check) the feature store of `cfg` and return its manifest; the store
    becomes the latest one (utils.store.latest_store), which notebook 02 trains on by default."""
    store = store_path(cfg)
    source_options = dict(cfg.source_options)
    if cfg.locale:
        source_options.setdefault("locale", cfg.locale)
    if cfg.splits is not None:
        source_options.setdefault("splits", list(cfg.splits))
    if cfg.workers != 0:
        start_forkserver()
    sources = combine(list(cfg.source), **source_options)
    plan = _plan(cfg, sources)
    processor, abilities = load_checkpoint(cfg.model)
    language, task = run_language(cfg, sources, abilities)
    set_label_prefix(processor, abilities, language, task)
    settings = make_settings(cfg, sources, processor, language, task, plan)
    with st.hold(store, "feature store"):
        check_settings(store, settings)
        manifest = _complete_store(store, settings, cfg.verify)
        if manifest is not None:
            log.info("%s: complete and intact with these settings; nothing to do", store)
        else:
            (store / st.MANIFEST).unlink(missing_ok=True)  # readers must not see a store change
            st.remove_tmp_files(store)
            started = time.perf_counter()
            records, reused = _extract(cfg, store, sources, plan, processor)
            manifest = build_manifest(settings, plan, records)
            st.write_manifest(store, manifest)
            resumed = f"; {reused} of {len(records)} shards were done already" if reused else ""
            log.info("%s: done in %.1f s%s", store, time.perf_counter() - started, resumed)
            log.info("%s", summarize(manifest))
    st.remember_latest(store)
    return manifest
