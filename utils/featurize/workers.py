"""The feature pipeline's worker processes: decode, check and featurize clips.

Workers need only the extractor's mel filters (not transformers), one torch thread each (the pool
is the parallelism), and notice when the pipeline that started them was killed.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from types import SimpleNamespace

import numpy as np
import torch

from ..audio import SAMPLE_RATE, load_audio
from ..augment import copies_for_store, parse_augment
from ..errors import TooLongError
from ..features import compact_log_mel, speech_bounds

# Skip reasons (manifest keys); the per-clip entry adds a detail naming the file or the numbers.
TOO_LONG = "too_long"
EMPTY_TRANSCRIPT = "empty_transcript"
LABELS_TOO_LONG = "labels_too_long"
UNREADABLE = "unreadable"
ORPHAN_CHECK_SECONDS = 1.0  # how often a worker checks that the pipeline process is still alive

_WORKER: SimpleNamespace | None = None  # per-process state set by init_worker


def _watch_parent(parent: int) -> None:
    # A SIGKILLed pipeline cannot stop its pool; workers notice they were orphaned and exit.
    while True:
        time.sleep(ORPHAN_CHECK_SECONDS)
        if os.getppid() != parent:
            os._exit(1)


def init_worker(
    mel_filters: np.ndarray, max_duration: float, augment: dict | None, pooled: bool
) -> None:
    """Pool initializer (or, with pooled=False, the setup of in-process extraction)."""
    global _WORKER
    if pooled:
        torch.set_num_threads(1)
    _WORKER = SimpleNamespace(
        extractor=SimpleNamespace(mel_filters=mel_filters),
        max_duration=max_duration,
        augment=parse_augment(augment),  # parsed once per worker, not once per clip
    )
    if pooled:
        threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()


def skip(reason: str, detail: str) -> dict:
    """The result of an example that gives no row."""
    return {"skip": reason, "detail": detail}


def featurize(example, labels: list[int]) -> dict:
    """Decode, check and featurize one example: {"rows": [...]} or {"skip": reason, "detail": ...}."""
    state = _WORKER
    name = example.audio if isinstance(example.audio, str) else f"{example.source}/{example.id}"
    try:
        # Decoding stops just past the limit: a clip claiming 1 s but holding hours costs no more.
        audio = load_audio(example.audio, name=name, max_seconds=state.max_duration)
    except TooLongError as err:
        return skip(
            TOO_LONG, f"{name}: {err.seconds:.2f} s is over the {state.max_duration:g} s limit"
        )
    except Exception as err:  # noqa: BLE001 - AudioError names the file; anything else is unreadable too
        return skip(UNREADABLE, str(err) if name in str(err) else f"{name}: {err}")
    # The copies (train split only) depend on (seed, source, id, copy) alone and land in their
    # original's shard, so a resumed or re-run shard is byte-identical.
    variants = [
        (audio, example.id, ""),
        *copies_for_store(audio, SAMPLE_RATE, state.augment, example),
    ]
    rows = []
    for wave, row_id, applied in variants:
        frames, pad_value = compact_log_mel(wave, state.extractor)
        speech_start, speech_end = speech_bounds(wave)
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
                "speech_start": speech_start,
                "speech_end": speech_end,
            }
        )
    return {"rows": rows}


def featurize_batch(jobs: list) -> list[dict]:
    """Worker task: featurize (example, labels) jobs in order; a job with a reason is a pre-skip."""
    return [
        skipped if skipped is not None else featurize(ex, labels) for ex, labels, skipped in jobs
    ]


def pool_context():
    """forkserver (Linux) forks workers from a clean server that imported torch once; spawn
    elsewhere. Plain fork is avoided: forking a process that runs torch threads can deadlock (and
    Python 3.13 warns about it)."""
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        # What workers import (torch above all) is loaded once in the server. Not the pipeline
        # module itself: under `python -m utils.featurize` workers would re-run it as __mp_main__.
        ctx.set_forkserver_preload(["utils.audio", "utils.features", "utils.featurize.workers"])
    return ctx


def start_forkserver() -> None:
    """Start the fork server now, so that it imports torch while this process loads transformers."""
    if pool_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def make_pool(workers: int, initargs: tuple):
    """A pool of `workers` processes set up by init_worker."""
    return pool_context().Pool(workers, initializer=init_worker, initargs=initargs)
