"""A training run from start to finish: find and check the store, train, evaluate, save, report.

    <output_dir>/checkpoint-<step>/     every `save_steps`, at most `save_total_limit` kept
    <output_dir>/runs/                  TensorBoard logs
    <output_dir>/baseline_metrics.json  the untouched base model on the eval split (computed once)
    <output_dir>/metrics.json           baseline, final and per-evaluation metrics, run facts
    <output_dir>/wer_table.md|.csv      WER / CER per evaluation step (step 0 = base model)
    <output_dir>/loss.png, wer.png      training curves
    <output_dir>/README.md              model card
    <output_dir>/config.json, model.safetensors, generation_config.json, tokenizer/processor files
                                        the final model: `from_pretrained(output_dir)` loads it

Rerunning the same run after a crash or a Colab disconnect resumes from the last complete
checkpoint; rerunning a finished run does nothing and returns its metrics; a run with other
settings in the same folder, or a second process on it, is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from pathlib import Path

from ..config import replace
from ..store import hold, read_json, write_json_atomic
from .checkpoints import (
    BASELINE_FILE,
    METRICS_FILE,
    check_same_run,
    checkpoint_step,
    finished_run,
    last_complete_checkpoint,
    remove_partial_checkpoints,
    run_settings,
)
from .checks import RunModel, check_store_matches_model, resolve_model
from .config import TrainConfig
from .data import load_datasets
from .locate import DRIVE_ROOT, locate_store, open_store, store_spec
from .longform_eval import longform_wer, stitched_audio
from .metrics import strip_prefix
from .report import fmt, history_from_log, push_results, wer_table_markdown, write_results
from .trainer import (
    default_workers,
    describe_device,
    load_model,
    make_trainer,
    resolve_precision,
    training_arguments,
    use_checkpointing,
)

log = logging.getLogger(__name__)

LONGFORM = "long-form"  # the extra evaluation on a stitched recording


def default_run_name(model: str, language: str | None, task: str) -> str:
    """ "<model name>-<language>[-translate]", e.g. whisper-small-sv."""
    name = Path(model.rstrip("/")).name or "whisper"
    return "-".join(
        [name, *([language] if language else []), *(["translate"] if task == "translate" else [])]
    )


def default_output_dir(spec: str, store_path: Path, run_name: str) -> Path:
    """Beside the store ("<store>-runs/<run_name>"); for a fetched store, Drive's
    MyDrive/whisper-runs/<run_name> when Drive is mounted (Colab), else runs/<run_name>."""
    if locate_store(spec)[0] == "dir":
        return store_path.parent / f"{store_path.name}-runs" / run_name
    drive = Path(DRIVE_ROOT) / "MyDrive"
    return (drive / "whisper-runs" if drive.is_dir() else Path("runs")) / run_name


def prepare_run(cfg: TrainConfig) -> dict:
    """Everything cheap and checkable before the model weights load: the store (its manifest),
    the model, language and task, the checks, the output folder.

    Returns a dict with spec, store, store_path, manifest, run (RunModel), run_name, output_dir.
    Raises ModelError / StoreMismatchError before any weights are loaded.
    """
    from transformers import WhisperConfig

    from ..store import FeatureStore

    spec = store_spec(cfg)
    kind, path = locate_store(spec)
    # A store folder's manifest is checked before any copy; a fetched store's after fetching.
    store, store_path = (None, path) if kind == "dir" else open_store(cfg, spec)
    manifest = FeatureStore(path).manifest if kind == "dir" else store.manifest
    run = resolve_model(cfg, manifest)
    check_store_matches_model(manifest, spec, WhisperConfig.from_pretrained(run.model), run)
    run_name = cfg.run_name or default_run_name(run.model, run.language, run.task)
    output_dir = (
        Path(cfg.output_dir) if cfg.output_dir else default_output_dir(spec, store_path, run_name)
    )
    return {
        "spec": spec,
        "store": store,
        "store_path": store_path,
        "manifest": manifest,
        "run": run,
        "run_name": run_name,
        "output_dir": output_dir.expanduser(),
    }


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


def train(cfg: TrainConfig) -> dict:
    """Fine-tune as configured; returns the metrics dict also written to <output_dir>/metrics.json.

    Runs the same under `python`, `torchrun` and `accelerate launch` (rank 0 writes the results).
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    prepared = prepare_run(cfg)
    run: RunModel = prepared["run"]
    output_dir: Path = prepared["output_dir"]
    cfg = replace(cfg, run_name=prepared["run_name"])
    settings = run_settings(cfg, run.model, run.language, run.task, prepared["manifest"])
    # One process trains in an output folder at a time (a second would resume from its checkpoints).
    lock = hold(output_dir, "output folder") if _is_main() else contextlib.nullcontext()
    with lock:
        if _is_main():
            check_same_run(output_dir, settings)
        done = finished_run(output_dir, cfg.max_steps)
        if done is not None:
            log.info(
                "%s: already trained for %d steps with these settings; nothing to do",
                output_dir,
                cfg.max_steps,
            )
            return done
        return _train(cfg, prepared, output_dir)


def _train(cfg: TrainConfig, prepared: dict, output_dir: Path) -> dict:
    run: RunModel = prepared["run"]
    precision = resolve_precision(cfg.precision)
    workers = cfg.dataloader_workers if cfg.dataloader_workers is not None else default_workers()
    args = training_arguments(cfg, output_dir, precision, workers)
    main = args.process_index == 0
    with args.main_process_first(local=True, desc="store"):
        store = prepared["store"] or open_store(cfg, prepared["spec"])[0]
        if args.local_process_index == 0:
            started = time.perf_counter()
            checked = store.verify()  # every shard's sha256: a damaged store never trains
            log.info(
                "store %s verified: %d shards, %.1f MB in %.1f s",
                store.path,
                checked["shards"],
                checked["bytes"] / 1e6,
                time.perf_counter() - started,
            )
    # The main process tidies the output dir before any process looks for a checkpoint in it.
    with args.main_process_first(local=False, desc="checkpoints"):
        resume = last_complete_checkpoint(output_dir)
        if main:
            output_dir.mkdir(parents=True, exist_ok=True)
            for path in remove_partial_checkpoints(output_dir, resume):
                log.info("removed incomplete checkpoint %s", path)

    train_set, eval_set, grouped = load_datasets(store, cfg, workers)
    model = load_model(cfg, run)
    trainer = make_trainer(model, args, train_set, eval_set, run.processor, grouped, cfg)
    log.info(
        "training %s on %d rows of %s (%s), evaluating on %d rows of %s; %s, %s, %d process(es); output %s",
        run.model, len(train_set), store.path, "+".join(cfg.train_splits), len(eval_set), cfg.eval_split,
        precision, describe_device(), args.world_size, output_dir,
    )  # fmt: skip

    extra_sets = {
        split: store.dataset([split], sources=list(cfg.sources) if cfg.sources else None)
        for split in cfg.extra_eval_splits
    }
    baseline = read_json(output_dir / BASELINE_FILE) if cfg.baseline else None
    if cfg.baseline and baseline is None:
        log.info("evaluating the base model (baseline) ...")
        baseline = strip_prefix(trainer.evaluate(metric_key_prefix="eval"))
        baseline["extra"] = {
            split: evaluate(trainer, rows, split) for split, rows in extra_sets.items()
        }
        if main:
            recording = longform_recording(cfg, prepared, eval_set)
            if recording is not None:
                baseline["extra"][LONGFORM] = longform_wer(run.model, *recording)
            write_json_atomic(output_dir / BASELINE_FILE, baseline)

    resume = last_complete_checkpoint(output_dir)
    resumed_from = checkpoint_step(resume) if resume else 0
    if resume:
        log.info("resuming from %s (step %d of %d)", resume, resumed_from, cfg.max_steps)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    train_seconds = time.perf_counter() - start

    log_history = trainer.state.log_history
    step = trainer.state.global_step
    last_eval = next(
        (e for e in reversed(log_history) if "eval_wer" in e and e["step"] == step), None
    )
    final = strip_prefix(last_eval or trainer.evaluate(metric_key_prefix="eval"))
    extra = {
        split: {
            "baseline": ((baseline or {}).get("extra") or {}).get(split),
            "final": evaluate(trainer, rows, split),
        }
        for split, rows in extra_sets.items()
    }

    save_final_model(trainer, run.processor, output_dir, cfg)
    baseline_longform = ((baseline or {}).get("extra") or {}).get(LONGFORM)
    if main and baseline_longform is not None:
        recording = longform_recording(cfg, prepared, eval_set)
        if recording is not None:
            extra[LONGFORM] = {
                "baseline": baseline_longform,
                "final": longform_wer(output_dir, *recording),
            }
    metrics = {
        "run_name": cfg.run_name,
        "model": run.model,
        "store": str(prepared["store_path"]),
        "output_dir": str(output_dir),
        "language": run.language,
        "task": run.task,
        "precision": precision,
        "gradient_checkpointing": use_checkpointing(cfg),
        "device": describe_device(),
        "world_size": args.world_size,
        "eval_rows": len(eval_set),
        "train_rows": len(train_set),
        "baseline": baseline,
        "final": final,
        "extra_evaluations": extra,
        "history": history_from_log(log_history, baseline),
        "train": {
            "global_step": step,
            "resumed_from_step": resumed_from,
            "steps_this_run": step - resumed_from,
            "seconds_this_run": round(train_seconds, 2),
            **{k: v for k, v in result.metrics.items() if isinstance(v, (int, float))},
        },
        "config": dataclasses.asdict(cfg),
    }
    if trainer.is_world_process_zero():
        write_results(output_dir, metrics, prepared["manifest"], log_history)
        log.info("%s", wer_table_markdown(metrics["history"]))
        if cfg.push_to_hub:
            metrics["hub_url"] = push_results(output_dir, cfg.hub_model_id)
            write_json_atomic(output_dir / METRICS_FILE, metrics)
    trainer.accelerator.wait_for_everyone()
    return metrics


def longform_recording(cfg: TrainConfig, prepared: dict, eval_set):
    """The stitched eval recording (audio, reference) of this run, or None (off, or no audio)."""
    if cfg.longform_eval_minutes <= 0:
        return None
    ids = {eval_set[i]["id"] for i in range(len(eval_set))}
    recording = stitched_audio(
        prepared["manifest"], cfg.eval_split, ids, cfg.longform_eval_minutes, cfg.seed
    )
    if recording is None:
        log.info("long-form evaluation skipped: the eval split's audio is not on disk")
    return recording


def evaluate(trainer, dataset, split: str) -> dict:
    """WER/CER of the trainer's model on another split of the store."""
    log.info("evaluating on the %s split ...", split)
    prefix = f"eval_{split}"
    return strip_prefix(
        trainer.evaluate(eval_dataset=dataset, metric_key_prefix=prefix), prefix + "_"
    )


def save_final_model(trainer, processor, output_dir: Path, cfg: TrainConfig) -> None:
    """Save the final model (LoRA merged) + processor into output_dir, loadable with from_pretrained
    and with language/task in its generation config, so `generate` needs no arguments."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if cfg.lora:
        model = model.merge_and_unload()
    model.config.use_cache = True  # the Trainer turns the KV cache off for training
    if trainer.is_world_process_zero():
        model.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
    trainer.accelerator.wait_for_everyone()


def summary_line(metrics: dict) -> str:
    """'done: <dir>  WER 30.1 -> 12.0 (normalized ...)' for the command line."""
    base, final = metrics.get("baseline") or {}, metrics["final"]
    return (
        f"done: {metrics['output_dir']}  WER {fmt(base.get('wer'))} -> {fmt(final.get('wer'))} "
        f"(normalized {fmt(base.get('wer_normalized'))} -> {fmt(final.get('wer_normalized'))})"
    )
