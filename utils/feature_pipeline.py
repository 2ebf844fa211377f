"""Feature pipeline: sources -> decoded audio -> exact compact log-Mel + labels -> feature store.

    python -m utils.feature_pipeline --source data/cv-corpus-sample/sv-SE --language swedish \\
        --model openai/whisper-small --store runs/features/sv-SE-whisper-small

Every core decodes and featurizes clips in a process pool while the main process reads the
sources, tokenizes transcripts and writes shards in order. Example k of a (source, split) goes into
shard k // shard_size; a shard is written (parquet, then its done record) only once all its
examples are processed, so a run killed at any moment resumes at the first unfinished shard with no
clip duplicated or lost. Clips that cannot be used are skipped with a reason and never stop the run.
With `augment` set, each training clip also gets augmented copies (utils/augment.py), stored next
to it in the same shard.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from tqdm.auto import tqdm

from . import store as st
from .audio import SAMPLE_RATE, load_audio
from .augment import copies_for_store, parse_augment
from .features import MAX_LABEL_TOKENS, N_SAMPLES, compact_log_mel, label_ids
from .sources import HubSource, Source, combine, subsample

MAX_DURATION = N_SAMPLES / SAMPLE_RATE  # 30 s: Whisper's window; longer clips would be truncated
# Skip reasons (manifest keys); the per-clip entry adds a detail naming the file or the numbers.
TOO_LONG = "too_long"
EMPTY_TRANSCRIPT = "empty_transcript"
LABELS_TOO_LONG = "labels_too_long"
UNREADABLE = "unreadable"
# Examples per task sent to a worker: big enough to amortize pickling and queue round trips, small
# enough that the last tasks of a shard do not leave cores idle.
CHUNKSIZE = 8
# Tasks in flight per worker: keeps every core busy while bounding memory (a streamed Hub source
# is never read far ahead of the workers).
TASKS_PER_WORKER = 4
ORPHAN_CHECK_SECONDS = 1.0  # how often a worker checks that the pipeline process is still alive


@dataclass(frozen=True)
class FeatureConfig:
    """Everything that decides what a feature store holds (plus how fast it is made)."""

    # source specs (see utils.sources); a single string is fine
    sources: tuple = ("data/cv-corpus-sample/sv-SE",)
    store: str | None = None  # store directory; None: runs/features/<source>-<model>
    model: str = "openai/whisper-small"  # hub id, or a dir with feature extractor + tokenizer
    language: str | None = None  # label language ("swedish" or "sv"); None: no language token
    task: str = "transcribe"  # "transcribe" or "translate" (the label prefix's task token)
    locale: str | None = None  # Common Voice locale when a source is a release root or archive
    splits: tuple | None = None  # splits to extract; None: each source's (train, dev, test)
    fraction: float | None = None  # keep this share of every split (stable hash of seed + id)
    count: int | None = None  # keep at most this many examples per split
    seed: int = 0  # subsampling (and augmentation) seed
    workers: int | None = None  # worker processes; None: all cores; 0: in this process
    shard_size: int = 1000  # examples per shard: the unit of resume and of checksums
    max_duration: float = MAX_DURATION  # longer clips are skipped (seconds, at most 30)
    # training-split augmentation (utils/augment.py): None/"off", "on", "noise,speed", or a dict
    # such as {"copies": 2, "p": 0.5, "speed_range": [0.8, 1.2]}; kept as AugmentConfig.to_dict()
    augment: dict | str | bool | None = None
    # extra open_source options, e.g. {"text_column": "transcription"} for a Hub dataset
    source_options: dict = field(default_factory=dict)
    chunksize: int = CHUNKSIZE  # examples per worker task
    verify: bool = True  # recompute shard checksums on rerun (catches truncated/corrupted shards)

    def __post_init__(self):
        # Normalise the convenient forms (a single string, "train,dev") so settings compare equal.
        if isinstance(self.sources, (str, Path, dict)):
            object.__setattr__(self, "sources", (self.sources,))
        object.__setattr__(
            self, "sources", tuple(str(s) if isinstance(s, Path) else s for s in self.sources)
        )
        if isinstance(self.splits, str):
            object.__setattr__(
                self, "splits", tuple(s.strip() for s in self.splits.split(",") if s.strip())
            )
        elif self.splits is not None:
            object.__setattr__(self, "splits", tuple(self.splits))
        if self.store is not None:
            object.__setattr__(self, "store", str(self.store))
        self._check()

    def _check(self) -> None:
        def bad(name: str, why: str):
            raise ValueError(f"FeatureConfig.{name}={getattr(self, name)!r}: {why}")

        if not self.sources:
            bad("sources", "give at least one source")
        if self.task not in ("transcribe", "translate"):
            bad("task", "must be 'transcribe' or 'translate'")
        if self.fraction is not None and not 0.0 < float(self.fraction) <= 1.0:
            bad("fraction", "must be in (0, 1]")
        if self.count is not None and (
            isinstance(self.count, bool) or int(self.count) != self.count or self.count < 1
        ):
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
        except ValueError as err:  # its message starts with the parameter, e.g. augment.speed_range
            raise ValueError(f"FeatureConfig.{err}") from None
        if augment is not None and augment.max_duration > self.max_duration:
            # a slowed copy must fit the same limit as the clips themselves
            augment = replace(augment, max_duration=self.max_duration)
        # a plain JSON-able dict: it goes to the workers and into the manifest's settings
        object.__setattr__(self, "augment", augment.to_dict() if augment else None)


# ------------------------------------------------------------------------------------- workers

_WORKER: SimpleNamespace | None = None  # per-process state set by _init_worker


def _watch_parent(parent: int) -> None:
    # A SIGKILLed pipeline cannot stop its pool; workers notice they were orphaned and exit.
    while True:
        time.sleep(ORPHAN_CHECK_SECONDS)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(
    mel_filters: np.ndarray, max_duration: float, augment: dict | None, pooled: bool
) -> None:
    """Pool initializer: one torch thread per process (the pool is the parallelism)."""
    global _WORKER
    if pooled:
        torch.set_num_threads(1)
    # compact_log_mel needs only the extractor's mel filters, so workers never import transformers.
    _WORKER = SimpleNamespace(
        extractor=SimpleNamespace(mel_filters=mel_filters),
        max_duration=max_duration,
        augment=parse_augment(augment),  # parsed once per worker, not once per clip
    )
    if pooled:
        threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()


def _skip(reason: str, detail: str) -> dict:
    return {"skip": reason, "detail": detail}


def _featurize(example, labels: list[int]) -> dict:
    """Decode, check and featurize one example: {"rows": [...]} or {"skip": reason, "detail": ...}."""
    state = _WORKER
    name = example.audio if isinstance(example.audio, str) else f"{example.source}/{example.id}"
    try:
        audio = load_audio(example.audio, name=name)
    except Exception as err:  # AudioError names the file; anything else is unreadable too
        return _skip(UNREADABLE, str(err) if name in str(err) else f"{name}: {err}")
    duration = len(audio) / SAMPLE_RATE
    if duration > state.max_duration:
        return _skip(
            TOO_LONG, f"{name}: {duration:.2f} s is over the {state.max_duration:g} s limit"
        )
    # The copies (train split only) depend on (seed, source, id, copy) alone and land in their
    # original's shard, so a resumed or re-run shard is byte-identical.
    variants = [
        (audio, example.id, ""),
        *copies_for_store(audio, SAMPLE_RATE, state.augment, example),
    ]
    rows = []
    for wave, row_id, applied in variants:
        frames, pad_value = compact_log_mel(wave, state.extractor)
        rows.append(
            {
                "id": row_id,
                "split": example.split,
                "source": example.source,
                "text": example.text,
                "labels": labels,
                "features": frames.tobytes(),
                "n_frames": frames.shape[1],
                "pad_value": pad_value,
                "duration": len(wave) / SAMPLE_RATE,
                "augment": applied,
            }
        )
    return {"rows": rows}


def _featurize_batch(jobs: list) -> list[dict]:
    """Worker task: featurize (example, labels) jobs in order; a job with a reason is a pre-skip."""
    out = []
    for example, labels, skipped in jobs:
        out.append(skipped if skipped is not None else _featurize(example, labels))
    return out


# ---------------------------------------------------------------------------------- main process


def load_whisper_parts(model: str, language: str | None, task: str):
    """(feature extractor, tokenizer with the language/task prefix) of a Whisper checkpoint."""
    from transformers import WhisperFeatureExtractor, WhisperTokenizer

    try:
        extractor = WhisperFeatureExtractor.from_pretrained(model)
        tokenizer = WhisperTokenizer.from_pretrained(model)
    except Exception as err:
        raise ValueError(
            f"model {model!r}: cannot load its Whisper feature extractor/tokenizer ({err}). Give a "
            "Hub id (needs the network or the HF cache) or a local checkpoint directory."
        ) from err
    try:
        tokenizer.set_prefix_tokens(language=language, task=task, predict_timestamps=False)
    except ValueError as err:
        raise ValueError(f"language {language!r} / task {task!r}: {err}") from err
    return extractor, tokenizer


def default_store_path(
    sources, model: str, root: str | Path = "runs/features", augment=None
) -> Path:
    """<root>/<source names>-<model name>, e.g. runs/features/sv-SE-whisper-small; "-augmented" is
    appended when `augment` turns augmentation on, so that a plain store is never refused for it."""
    specs = [sources] if isinstance(sources, (str, Path, dict)) else list(sources)
    names = []
    for spec in specs:
        spec = spec.get("spec", "source") if isinstance(spec, dict) else str(spec)
        spec = spec.split("?", 1)[0].removeprefix("hf:").rstrip("/")
        names.append(
            st.safe_name(
                Path(spec).name.removesuffix(".tar.gz").removesuffix(".tgz").removesuffix(".tar")
            )
        )
    suffix = "-augmented" if parse_augment(augment) else ""
    model_name = st.safe_name(Path(str(model).rstrip("/")).name)
    return Path(root) / f"{'+'.join(names)}-{model_name}{suffix}"


def make_settings(
    cfg: FeatureConfig, sources: list[Source], extractor, tokenizer, splits: dict
) -> dict:
    """The manifest's settings: everything that decides the store's content."""
    return {
        "model": cfg.model,
        "n_mels": int(extractor.feature_size),
        "language": cfg.language,
        "task": cfg.task,
        "sampling_rate": SAMPLE_RATE,
        "label_prefix": list(tokenizer.prefix_tokens),
        "augment": cfg.augment,
        "sources": [{**source.describe(), "splits": splits[source.name]} for source in sources],
        "subsample": {"fraction": cfg.fraction, "count": cfg.count, "seed": cfg.seed},
        "shard_size": cfg.shard_size,
        "max_duration": cfg.max_duration,
    }


def _comparable(settings: dict) -> dict:
    # Where a source lives may change between runs (a remounted Drive, another cwd); what it is may not.
    out = json.loads(json.dumps(settings))
    for source in out.get("sources", []):
        source.pop("origin", None)
    return out


def check_settings(store: Path, settings: dict) -> None:
    """Refuse to mix stores: a store built with other settings makes this run fail, naming both.

    settings.json is written when a store is first created, before any shard, so a store killed
    before its manifest was written is protected too.
    """
    recorded = st.read_json(store / st.SETTINGS)
    if recorded is None:
        manifest = st.read_json(store / st.MANIFEST)
        recorded = manifest.get("settings") if isinstance(manifest, dict) else None
    if recorded is None:
        if store.is_dir() and any(p for p in (store / st.SHARDS).rglob("*.json")):
            raise ValueError(
                f"{store}: holds shards but no {st.SETTINGS}; not a store this pipeline can resume"
            )
        st.write_json_atomic(store / st.SETTINGS, settings)
        return
    old, new = _comparable(recorded), _comparable(settings)
    if old != new:
        keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        was = ", ".join(f"{k}={old.get(k)!r}" for k in keys)
        now = ", ".join(f"{k}={new.get(k)!r}" for k in keys)
        raise ValueError(
            f"{store}: this store was built with {was}; this run asks for {now}. "
            "Use another store path, or delete this store to rebuild it."
        )
    if not (store / st.SETTINGS).is_file():
        st.write_json_atomic(store / st.SETTINGS, recorded)


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
                raise ValueError(
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
            _skip(EMPTY_TRANSCRIPT, f"{example.source}/{example.id}: empty transcript"),
        )
    labels = label_ids(tokenizer, text)
    if len(labels) > MAX_LABEL_TOKENS:
        detail = f"{example.source}/{example.id}: {len(labels)} label tokens, over the decoder's {MAX_LABEL_TOKENS}"
        return example, None, _skip(LABELS_TOO_LONG, detail)
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


def _done(
    store: Path, source: str, split: str, index: int, verify: bool
) -> tuple[dict | None, str | None]:
    if verify:
        return st.done_shard(store, source, split, index)
    record = st.read_json(store / f"{st.shard_stem(source, split, index)}.json")
    return record if record and (store / record["file"]).is_file() else None, None


def _pool_context():
    # forkserver (Linux) forks workers from a clean server that imported torch once; spawn elsewhere.
    # Plain fork is avoided: forking a process that already runs torch threads can deadlock.
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        # What workers import (torch above all) is loaded once in the server. Not this module
        # itself: under `python -m utils.feature_pipeline` workers re-run it as __mp_main__.
        ctx.set_forkserver_preload(["utils.audio", "utils.features"])
    return ctx


def _start_forkserver() -> None:
    """Start the fork server now, so that it imports torch while this process loads transformers."""
    if _pool_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _make_pool(workers: int, initargs: tuple):
    return _pool_context().Pool(workers, initializer=_init_worker, initargs=initargs)


def _extract(
    cfg: FeatureConfig, store: Path, sources: list[Source], plan: dict, extractor, tokenizer
) -> tuple[list[dict], int]:
    """Process every (source, split) shard that is not done.

    Returns (every shard's record in store order, how many shards were done already).
    """
    workers = (os.cpu_count() or 1) if cfg.workers is None else cfg.workers
    initargs = (
        np.asarray(extractor.mel_filters, dtype=np.float32),
        cfg.max_duration,
        cfg.augment,
    )
    pool = _make_pool(workers, (*initargs, True)) if workers > 0 else None
    if pool is None:
        _init_worker(*initargs, False)
    reused = 0
    slots: list = []  # records and _Shards in store order; _Shards become records once written
    pending: deque = deque()  # (shard, async result or results) in submission order
    window = max(1, workers) * TASKS_PER_WORKER
    total = _count_examples(cfg, sources, plan)
    bar = tqdm(total=total, unit="clip", desc="features", dynamic_ncols=True, mininterval=1.0)

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
                for index, examples in enumerate(
                    _batched(_examples(cfg, source, split), cfg.shard_size)
                ):
                    record, problem = _done(store, source.name, split, index, cfg.verify)
                    if problem:
                        name = st.shard_stem(source.name, split, index) + ".parquet"
                        tqdm.write(f"{store / name}: {problem}; extracting it again")
                        st.remove_shard(store, source.name, split, index)
                    if record is not None and record.get("examples") == len(examples):
                        reused += 1
                        slots.append(record)
                        bar.update(len(examples))
                        continue
                    jobs = [_prepare(example, tokenizer) for example in examples]
                    tasks = list(_batched(jobs, cfg.chunksize))
                    shard = _Shard(source.name, split, index, examples, len(tasks), slot=len(slots))
                    slots.append(shard)
                    for task in tasks:
                        while len(pending) >= window:
                            collect_one()
                        submitted = (
                            pool.apply_async(_featurize_batch, (task,))
                            if pool
                            else _featurize_batch(task)
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
    """The manifest of a complete store built with `settings` whose shards are all intact, else None
    (damaged shards are named and removed so that they are extracted again)."""
    manifest = st.read_json(store / st.MANIFEST)
    if not isinstance(manifest, dict) or _comparable(manifest.get("settings", {})) != _comparable(
        settings
    ):
        return None
    damaged = []
    for shard in manifest["shards"]:
        problem = (
            st.shard_problem(store, shard)
            if verify
            else (None if (store / shard["file"]).is_file() else "missing")
        )
        if problem:
            damaged.append(shard)
            print(f"{store / shard['file']}: {problem}; extracting it again")
    if not damaged:
        return manifest
    (store / st.MANIFEST).unlink(missing_ok=True)
    for shard in damaged:
        st.remove_shard(
            store, shard["source"], shard["split"], int(Path(shard["file"]).stem.rsplit("-", 1)[1])
        )
    return None


def run_feature_pipeline(cfg: FeatureConfig) -> dict:
    """Build (or finish, or check) the feature store of `cfg` and return its manifest."""
    store = (
        Path(cfg.store)
        if cfg.store
        else default_store_path(cfg.sources, cfg.model, augment=cfg.augment)
    )
    source_options = dict(cfg.source_options)
    if cfg.locale:
        source_options.setdefault("locale", cfg.locale)
    if cfg.splits is not None:
        source_options.setdefault("splits", list(cfg.splits))
    if cfg.workers != 0:
        _start_forkserver()
    sources = combine(list(cfg.sources), **source_options)
    plan = _plan(cfg, sources)
    extractor, tokenizer = load_whisper_parts(cfg.model, cfg.language, cfg.task)
    settings = make_settings(cfg, sources, extractor, tokenizer, plan)
    store.mkdir(parents=True, exist_ok=True)
    check_settings(store, settings)
    manifest = _complete_store(store, settings, cfg.verify)
    if manifest is not None:
        print(f"{store}: complete and intact with these settings; nothing to do")
        return manifest
    (store / st.MANIFEST).unlink(missing_ok=True)  # readers must not see a store being changed
    st.remove_tmp_files(store)
    started = time.perf_counter()
    records, reused = _extract(cfg, store, sources, plan, extractor, tokenizer)
    manifest = build_manifest(settings, plan, records)
    st.write_manifest(store, manifest)
    resumed = f"; {reused} of {len(records)} shards were done already" if reused else ""
    print(f"{store}: done in {time.perf_counter() - started:.1f} s{resumed}")
    print(summarize(manifest))
    return manifest


# ------------------------------------------------------------------------------ summary and plots


def summarize(manifest: dict) -> str:
    """A few lines for people: rows and hours per split, per source, skipped by reason, size."""
    lines = []
    for split, rows in manifest["splits"].items():
        hours = manifest.get("seconds", {}).get(split, 0.0) / 3600
        lines.append(f"{split:>6}: {rows} clips, {hours:.2f} h")
    for source, splits in manifest["sources"].items():
        lines.append(f"source {source}: " + ", ".join(f"{k} {v}" for k, v in splits.items()))
    skipped = manifest["skipped"]
    lines.append(
        "skipped: " + (", ".join(f"{k} {v}" for k, v in skipped.items()) if skipped else "none")
    )
    lines.append(f"store: {len(manifest['shards'])} shards, {manifest['bytes'] / 1e6:.1f} MB")
    return "\n".join(lines)


def plot_durations(store: str | Path, out: str | Path) -> Path:
    """Histogram of clip durations, stacked per split, saved as a PNG."""
    from matplotlib.figure import Figure

    feature_store = st.FeatureStore(store)
    per_split = {
        split: feature_store.column("duration", split) for split in feature_store.manifest["splits"]
    }
    per_split = {split: durations for split, durations in per_split.items() if durations}
    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.subplots()
    if per_split:
        longest = max(max(durations) for durations in per_split.values())
        bins = np.linspace(0, max(1.0, np.ceil(longest)), 41)
        labels = [f"{split} ({len(d)} clips)" for split, d in per_split.items()]
        ax.hist(list(per_split.values()), bins=bins, stacked=True, label=labels)
        ax.legend()
    ax.set(xlabel="clip duration (s)", ylabel="clips", title=f"Clip durations: {Path(store).name}")
    fig.savefig(out, dpi=110)
    return Path(out)


def plot_log_mel(
    store: str | Path, out: str | Path, split: str | None = None, index: int = 0
) -> Path:
    """One stored clip's log-Mel window (as the model sees it: padded to 30 s), saved as a PNG."""
    from matplotlib.figure import Figure

    from .features import expand_log_mel

    feature_store = st.FeatureStore(store)
    splits = [split] if split else [s for s, n in feature_store.manifest["splits"].items() if n]
    if not splits:
        raise ValueError(f"{store}: holds no rows to plot")
    item = feature_store.dataset(splits[0])[index]
    window = expand_log_mel(item["features"], item["pad_value"])
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(window, origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
    ax.axvline(item["features"].shape[1], color="white", lw=0.8, ls="--")
    ax.set(
        xlabel="frame (10 ms); dashed: end of the stored frames",
        ylabel="mel bin",
        title=f"{item['id']}: {item['text']}",
    )
    fig.colorbar(image, ax=ax, pad=0.01)
    fig.savefig(out, dpi=110)
    return Path(out)


# ----------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """Command line: build or resume a feature store."""
    parser = argparse.ArgumentParser(
        prog="python -m utils.feature_pipeline", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--source", action="append", required=True, help="source spec (repeat for several)"
    )
    parser.add_argument("--store", help="store directory (default runs/features/<source>-<model>)")
    parser.add_argument("--model", default=FeatureConfig.model, help="Whisper hub id or local dir")
    parser.add_argument("--language", help="label language, e.g. swedish")
    parser.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
    parser.add_argument("--locale", help="Common Voice locale (release root or archive)")
    parser.add_argument("--splits", help="comma-separated splits (default: the source's)")
    parser.add_argument("--fraction", type=float, help="keep this share of each split")
    parser.add_argument("--count", type=int, help="keep at most this many examples per split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, help="worker processes (default: all cores)")
    parser.add_argument("--shard-size", type=int, default=FeatureConfig.shard_size)
    parser.add_argument("--max-duration", type=float, default=MAX_DURATION)
    parser.add_argument("--chunksize", type=int, default=CHUNKSIZE)
    parser.add_argument(
        "--augment",
        help='augment training clips: "on", techniques ("noise,speed") or JSON such as '
        '\'{"copies": 2, "p": 0.5, "speed_range": [0.8, 1.2]}\' (default: off)',
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="trust done records without re-hashing shards"
    )
    args = parser.parse_args(argv)
    try:
        run_feature_pipeline(_config_from_args(args))
    except (ValueError, st.StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _config_from_args(args: argparse.Namespace) -> FeatureConfig:
    return FeatureConfig(
        sources=tuple(args.source),
        store=args.store,
        model=args.model,
        language=args.language,
        task=args.task,
        locale=args.locale,
        splits=args.splits,
        fraction=args.fraction,
        count=args.count,
        seed=args.seed,
        workers=args.workers,
        shard_size=args.shard_size,
        max_duration=args.max_duration,
        chunksize=args.chunksize,
        augment=args.augment,
        verify=not args.no_verify,
    )


if __name__ == "__main__":
    sys.exit(main())
