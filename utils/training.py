"""Fine-tune Whisper on a feature store, with WER evaluation, automatic resume and multi-GPU.

    python -m utils.training --config run.yaml [--set key=value ...]
    torchrun --nproc_per_node 4 -m utils.training --config run.yaml        # same code, 4 GPUs
    accelerate launch -m utils.training --config run.yaml

The store (utils/store.py) holds only the log-Mel frames that carry audio, in float16; the collator
rebuilds the exact padded [n_mels, 3000] float32 input per batch. Before anything heavy is loaded,
the store is checked against the model (mel bins, label prefix/tokenizer, language, task).

An output directory holds everything a run makes:

    <output_dir>/checkpoint-<step>/     every `save_steps`, at most `save_total_limit` kept
    <output_dir>/runs/                  TensorBoard logs
    <output_dir>/baseline_metrics.json  the untouched base model on the eval split (computed once)
    <output_dir>/metrics.json           baseline, final and per-evaluation metrics, run facts
    <output_dir>/wer_table.md|.csv      WER / CER per evaluation step (step 0 = base model)
    <output_dir>/loss.png, wer.png      training curves
    <output_dir>/README.md              model card
    <output_dir>/config.json, model.safetensors, generation_config.json, tokenizer/processor files
                                        the final model: `from_pretrained(output_dir)` loads it

The final model lives in the output directory itself (the Hugging Face Trainer's convention, so the
folder is what `push_to_hub` uploads, model card included); LoRA runs save the merged model there.
Rerunning the same command after a crash or a Colab disconnect resumes from the last complete
checkpoint; rerunning a finished run does nothing and returns its metrics.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .features import N_FRAMES

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
TASKS = ("transcribe", "translate")
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# Files whose presence (one of them) means a checkpoint's model weights were written completely:
# the Trainer writes weights first and trainer_state.json last, so weights + a parseable state file
# mark a finished checkpoint. Adapter files are what LoRA (peft) checkpoints hold.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
)
TRAINER_STATE = "trainer_state.json"
METRICS_FILE = "metrics.json"
BASELINE_FILE = "baseline_metrics.json"
# Where Colab mounts Google Drive. Random reads from there are slow (a network file system), so a
# store under it is copied to local disk before training by default.
DRIVE_ROOT = "/content/drive"
# A Drive file id as gdown takes it: 25+ characters of [A-Za-z0-9_-] (ids are 28-44 long).
DRIVE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{25,}$")
# The store decodes zstd-compressed float16 frames to ~1.3x their on-disk size; 1.5 leaves margin.
DECODED_BYTES_FACTOR = 1.5
# The reader keeps this much decoded feature data in memory in total (split among DataLoader
# workers): a training set that fits is read from disk once, whatever the order.
FEATURE_CACHE_BYTES = 2 << 30
METRIC_NAMES = ("wer", "wer_normalized", "cer")


class StoreMismatchError(ValueError):
    """The store was built for another model (mel bins, tokenizer) or language/task."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; a YAML file or `--set key=value` fills it from the CLI."""

    # A feature store: a local directory, a Drive path (/content/drive/...), a packed store (.tar),
    # or the gdown Drive file id / URL of a packed store (fetched once, then reused).
    store: str
    # Whisper checkpoint to start from: a hub id or a local directory with model + processor.
    model: str = "openai/whisper-small"
    # Language of the transcripts ("sv", "swedish", ...); None = the store's language.
    language: str | None = None
    # "transcribe" or "translate" (to English); None = the store's task.
    task: str | None = None
    # Where checkpoints, logs, results and the final model go; None = beside the store:
    # "<store>-runs/<run_name>" (on Drive in Colab when the store is); for a fetched store
    # MyDrive/whisper-runs/<run_name> when Drive is mounted, else runs/<run_name>.
    output_dir: str | None = None
    # Name of the run (output folder, model card title); None = "<model name>-<language>".
    run_name: str | None = None
    # Store splits to train on (Common Voice practice: train + dev) and the split to evaluate on.
    train_splits: tuple[str, ...] = ("train", "dev")
    eval_split: str = "test"
    # Only these store sources (None = all of them), for training and evaluation.
    sources: tuple[str, ...] | None = None
    # Peak learning rate of the linear schedule (the Whisper fine-tuning blog's 1e-5 for small).
    learning_rate: float = 1e-5
    # Examples per device per forward pass; the effective batch is this x gradient_accumulation x
    # number of devices. 16 is the blog's setting for whisper-small.
    batch_size: int = 16
    # Batch size for evaluation with generate; None = batch_size.
    eval_batch_size: int | None = None
    # Forward/backward passes per optimizer step (a bigger effective batch in the same memory).
    gradient_accumulation: int = 1
    # Optimizer steps in total, and linear warm-up steps at the start.
    max_steps: int = 4000
    warmup_steps: int = 500
    # Evaluate (WER with generate) and write a checkpoint every this many steps.
    eval_steps: int = 500
    save_steps: int = 500
    # Checkpoints kept (oldest deleted first); None = keep all (each whisper-small one is ~2.8 GB
    # with optimizer state).
    save_total_limit: int | None = 2
    # Log the training loss every this many steps (TensorBoard, loss curve).
    logging_steps: int = 25
    # "auto" = bf16 on GPUs that support it, else fp16 on CUDA, fp32 on CPU; or force one.
    precision: str = "auto"
    # Recompute activations in the backward pass: ~30 % slower, but the activation memory of a
    # whisper-small batch of 16 drops from ~10 GB to ~1.5 GB, so it fits a 16 GB Colab T4.
    # None = on with a GPU, off on CPU (RAM is rarely the limit there, time is). Set False on a
    # GPU with memory to spare for speed.
    gradient_checkpointing: bool | None = None
    # SpecAugment (Whisper's config): probability of masking time steps / mel channels while
    # training; 0 = off (the blog's setting). The paper's fine-tuning used ~0.05 / 0.0.
    mask_time_prob: float = 0.0
    mask_feature_prob: float = 0.0
    # Train only the decoder (the encoder's weights stay as they are): less memory and faster.
    freeze_encoder: bool = False
    # LoRA adapters via peft instead of full fine-tuning (medium/large on a 16 GB GPU); the saved
    # final model has the adapters merged in, so it loads like any Whisper.
    lora: bool = False
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    # Longest generated transcript at evaluation, in tokens (the blog's 225).
    generation_max_length: int = 225
    # Beam size at evaluation (1 = greedy, as the blog).
    generation_num_beams: int = 1
    # Evaluate on the first N rows of the eval split only (quick runs); None = all of them.
    eval_max_samples: int | None = None
    # DataLoader worker processes; None = 4 (or the cores there are) on a GPU, 0 on CPU where the
    # model needs every core and the data path is far faster than CPU training anyway.
    dataloader_workers: int | None = None
    # Evaluate the untouched base model on the eval split first, for baseline vs fine-tuned.
    baseline: bool = True
    # Upload the final model, card and results to the Hub as hub_model_id ("user/name").
    push_to_hub: bool = False
    hub_model_id: str | None = None
    # Seed of model init for new layers (LoRA), data order and dropout.
    seed: int = 42
    # Copy the store to local disk before training; None = when it is on Google Drive.
    copy_to_local: bool | None = None
    # Where local copies and fetched stores go; None = <temp dir>/feature-stores/<name>.
    local_dir: str | None = None
    # Where training logs go: any of "tensorboard", "wandb", ... or "none".
    report_to: tuple[str, ...] = ("tensorboard",)

    def __post_init__(self):
        def fail(name: str, why: str):
            raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: {why}")

        if not str(self.store).strip():
            fail("store", "give a store directory, a .tar, or a Drive file id / URL")
        if self.precision not in PRECISIONS:
            fail("precision", f"must be one of {PRECISIONS}")
        if self.task is not None and self.task not in TASKS:
            fail("task", f"must be one of {TASKS} (or None for the store's)")
        for name in (
            "batch_size",
            "gradient_accumulation",
            "max_steps",
            "eval_steps",
            "save_steps",
            "logging_steps",
        ):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                fail(name, "must be a positive integer")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            fail("warmup_steps", "must be an integer >= 0")
        for name in ("eval_batch_size", "eval_max_samples", "save_total_limit"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                fail(name, "must be a positive integer or None")
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
            fail("learning_rate", "must be a number > 0")
        for name in ("mask_time_prob", "mask_feature_prob", "lora_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                fail(name, "must be a probability in [0, 1]")
        if self.lora and (self.lora_r < 1 or self.lora_alpha <= 0 or not self.lora_targets):
            fail("lora_r", "LoRA needs lora_r >= 1, lora_alpha > 0 and at least one target module")
        if self.generation_max_length < 1 or self.generation_num_beams < 1:
            fail(
                "generation_max_length",
                "generation_max_length and generation_num_beams must be >= 1",
            )
        if self.dataloader_workers is not None and self.dataloader_workers < 0:
            fail("dataloader_workers", "must be >= 0 or None")
        if self.push_to_hub and not self.hub_model_id:
            fail(
                "hub_model_id", "push_to_hub needs hub_model_id, e.g. 'your-name/whisper-small-sv'"
            )
        if not self.train_splits:
            fail("train_splits", "name at least one split to train on")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from a dict (YAML), refusing unknown keys and turning lists into tuples."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; known: {sorted(known)}")
        tuples = {"train_splits", "sources", "lora_targets", "report_to"}
        clean = {}
        for key, value in values.items():
            if key in tuples and value is not None:
                value = (value,) if isinstance(value, str) else tuple(value)
            clean[key] = value
        if "store" not in clean:
            raise ValueError(
                "TrainConfig needs `store` (a store directory, .tar, or Drive id / URL)"
            )
        return cls(**clean)

    def replace(self, **changes) -> TrainConfig:
        """A copy with some fields changed (validated like a new config)."""
        return TrainConfig.from_dict({**dataclasses.asdict(self), **changes})


# ----------------------------------------------------------------------------- language and task


def language_code(language: str | None) -> str | None:
    """Whisper's code for a language given as a code, an English name or a token ("<|sv|>")."""
    if language is None or str(language).strip() == "":
        return None
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    key = str(language).strip().lower().removeprefix("<|").removesuffix("|>")
    if key in LANGUAGES:
        return key
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    raise ValueError(f"language={language!r} is not a Whisper language (e.g. 'sv' or 'swedish')")


# ----------------------------------------------------------------------------------- the collator


@dataclass
class WhisperStoreCollator:
    """Turns store items into a Whisper training batch.

    input_features: float32 [B, n_mels, 3000], the exact padded log-Mel window rebuilt from each
    item's compact float16 frames and its pad value (equal to `features.expand_log_mel` per row).
    labels: int64 [B, L], the token ids without the leading <|startoftranscript|> (the model
    prepends `decoder_start_token_id` itself when it shifts labels right), padded with -100 so the
    loss ignores padding.
    """

    decoder_start_token_id: int
    n_frames: int = N_FRAMES

    def __call__(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        return {"input_features": self.features(items), "labels": self.labels(items)}

    def features(self, items: Sequence[dict]) -> torch.Tensor:
        n_mels = items[0]["features"].shape[0]
        out = np.empty((len(items), n_mels, self.n_frames), dtype=np.float32)
        for b, item in enumerate(items):
            frames = item["features"]
            if frames.shape[0] != n_mels:
                raise ValueError(
                    f"item {item.get('id', b)!r} has {frames.shape[0]} mel bins, the batch {n_mels}"
                )
            n = min(frames.shape[1], self.n_frames)
            # One pass per row: frames converted float16 -> float32 in place, then the pad value
            # written once over the rest (no full-window fill that is then overwritten).
            out[b, :, :n] = frames[:, :n]
            out[b, :, n:] = item["pad_value"]
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


# -------------------------------------------------------------------------------------- metrics


def text_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """WER (orthographic, as written), WER after Whisper's BasicTextNormalizer (lower case, no
    punctuation or bracketed text), and CER, in percent.

    Pairs whose reference is empty (after normalization, for the normalized WER) are left out, as
    WER is undefined for them.
    """
    import jiwer
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer

    normalize = BasicTextNormalizer()

    def rate(fn, preds, refs) -> float:
        pairs = [(p, r) for p, r in zip(preds, refs, strict=True) if r.strip()]
        if not pairs:
            return float("nan")
        return 100.0 * fn([r for _, r in pairs], [p for p, _ in pairs])

    return {
        "wer": rate(jiwer.wer, predictions, references),
        "wer_normalized": rate(
            jiwer.wer, [normalize(p) for p in predictions], [normalize(r) for r in references]
        ),
        "cer": rate(jiwer.cer, predictions, references),
    }


def make_compute_metrics(tokenizer):
    """The Trainer's compute_metrics: decode generated ids and labels, then `text_metrics`."""
    # Whisper tokenizers may have no pad token: <|endoftext|> is what padding decodes to anyway.
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )

    def compute_metrics(pred) -> dict[str, float]:
        pred_ids = np.asarray(pred.predictions)
        label_ids = np.asarray(pred.label_ids)
        # Generated sequences are padded with -100 when gathered across batches / processes.
        pred_ids = np.where(pred_ids < 0, pad_id, pred_ids)
        label_ids = np.where(label_ids < 0, pad_id, label_ids)
        predictions = tokenizer.batch_decode(pred_ids, skip_special_tokens=True)
        references = tokenizer.batch_decode(label_ids, skip_special_tokens=True)
        return text_metrics(predictions, references)

    return compute_metrics


# --------------------------------------------------------------------------- store: find and check


def is_on_drive(path: str | Path) -> bool:
    """True for a path under Colab's Google Drive mount."""
    return str(Path(path).expanduser().absolute()).startswith(DRIVE_ROOT + "/")


def _local_root(cfg: TrainConfig) -> Path:
    import tempfile

    return Path(cfg.local_dir) if cfg.local_dir else Path(tempfile.gettempdir()) / "feature-stores"


def locate_store(cfg: TrainConfig) -> tuple[str, Path | None]:
    """("dir", path) for a store directory, ("fetch", None) for a .tar, Drive id or URL."""
    spec = str(cfg.store).strip()
    path = Path(spec).expanduser()
    if path.is_dir():
        return "dir", path
    if path.is_file() or spec.startswith(("http://", "https://")) or DRIVE_ID_RE.match(spec):
        return "fetch", None
    raise FileNotFoundError(
        f"store={spec!r}: no such directory, and not a .tar file, an http(s) URL or a Drive file id"
    )


def _local_rank() -> int:
    # Set by torchrun / accelerate launch for every process; 0 (or unset) on one process per machine.
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def wait_for_store(path: Path, manifest: dict | None = None, timeout: float = 6 * 3600):
    """Wait until `path` holds a complete store (with this manifest, if given) and open it: what
    the other processes on a machine do while local rank 0 fetches or copies the store. The
    manifest is written last, so its presence means the copy is complete."""
    from .store import FeatureStore, read_json

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = read_json(path / "manifest.json")
        if found is not None and (manifest is None or found == manifest):
            return FeatureStore(path)
        time.sleep(1.0)
    raise TimeoutError(f"{path}: no complete store after {timeout:.0f} s (local rank 0 failed?)")


def open_store(cfg: TrainConfig):
    """The store the config names, fetched (gdown) or copied to local disk as configured. Under
    torchrun only local rank 0 downloads or copies; the other processes wait for its result.

    Returns (FeatureStore to read from, the store's own path: where the output folder goes).
    """
    from .store import FeatureStore, copy_to_local, fetch_store

    kind, path = locate_store(cfg)
    if kind == "fetch":
        spec = str(cfg.store).strip()
        name = (
            Path(spec).stem if Path(spec).is_file() else re.sub(r"[^A-Za-z0-9_-]", "_", spec)[-40:]
        )
        dest = _local_root(cfg) / name
        store = fetch_store(spec, dest) if _local_rank() == 0 else wait_for_store(dest)
        return store, store.path
    store = FeatureStore(path)
    copy = cfg.copy_to_local if cfg.copy_to_local is not None else is_on_drive(path)
    if copy:
        dest = _local_root(cfg) / path.name
        if _local_rank() != 0:
            return wait_for_store(dest, store.manifest), path
        print(f"copying the store {path} to local disk (fast random reads) ...", flush=True)
        start = time.perf_counter()
        store = copy_to_local(path, dest)
        print(f"  -> {store.path} in {time.perf_counter() - start:.1f} s", flush=True)
    return store, path


def _describe_prefix(tokenizer, ids: Sequence[int]) -> str:
    size = len(tokenizer)
    return "".join(
        tokenizer.convert_ids_to_tokens(i) if 0 <= i < size else f"<id {i}?>" for i in ids
    )


def check_store_matches_model(
    manifest: dict,
    store_name: str,
    model_config,
    tokenizer,
    model_name: str,
    language: str | None,
    task: str,
) -> None:
    """Raise StoreMismatchError, naming the store and the model, when the store's features or
    labels were made for another model (mel bins, tokenizer / special-token ids) or language/task.

    `tokenizer` must already have its prefix set for `language` and `task`.
    """
    settings = manifest.get("settings", {})
    store_model = settings.get("model", "an unknown model")
    n_mels, expected = settings.get("n_mels"), model_config.num_mel_bins
    if n_mels is not None and int(n_mels) != int(expected):
        raise StoreMismatchError(
            f"store {store_name} was made with {n_mels} mel bins for {store_model}, "
            f"model {model_name} expects {expected}: build a store for {model_name} "
            f"(notebook 01, model={model_name!r}) or train {store_model}"
        )
    store_language = language_code(settings.get("language"))
    if store_language is not None and language is not None and store_language != language:
        raise StoreMismatchError(
            f"store {store_name} holds {store_language!r} transcripts (made for {store_model}), "
            f"but language={language!r} was asked for model {model_name}"
        )
    store_task = settings.get("task")
    if store_task is not None and store_task != task:
        raise StoreMismatchError(
            f"store {store_name} has labels for task {store_task!r} (made for {store_model}), "
            f"but task={task!r} was asked for model {model_name}"
        )
    prefix = settings.get("label_prefix")
    model_prefix = list(tokenizer.prefix_tokens)
    if prefix is not None and list(prefix) != model_prefix:
        raise StoreMismatchError(
            f"store {store_name} has labels made with the tokenizer of {store_model} for "
            f"language={settings.get('language')!r} task={store_task!r}: prefix ids {list(prefix)} "
            f"({_describe_prefix(tokenizer, prefix)} in {model_name}'s vocabulary), but model "
            f"{model_name}'s tokenizer gives {model_prefix} ({_describe_prefix(tokenizer, model_prefix)}) "
            f"for language={language!r} task={task!r}: build a store for {model_name} with that "
            f"language and task"
        )
    if model_prefix and model_prefix[0] != model_config.decoder_start_token_id:
        raise StoreMismatchError(
            f"model {model_name}: its tokenizer starts labels with {model_prefix[0]}, its config "
            f"decodes from {model_config.decoder_start_token_id}"
        )
    vocab = int(model_config.vocab_size)
    if prefix is not None and max(prefix) >= vocab:
        raise StoreMismatchError(
            f"store {store_name} uses token ids up to {max(prefix)} ({store_model}), model "
            f"{model_name} has a vocabulary of {vocab}"
        )


def run_language_task(cfg: TrainConfig, manifest: dict) -> tuple[str | None, str]:
    """The run's language code and task: the config's, else the store's."""
    settings = manifest.get("settings", {})
    language = language_code(cfg.language) or language_code(settings.get("language"))
    task = cfg.task or settings.get("task") or "transcribe"
    return language, task


# ------------------------------------------------------------------------------ output and resume


def default_run_name(cfg: TrainConfig, language: str | None, task: str) -> str:
    """ "<model name>-<language>[-translate]", e.g. whisper-small-sv."""
    name = Path(cfg.model.rstrip("/")).name or "whisper"
    parts = (
        [name] + ([language] if language else []) + (["translate"] if task == "translate" else [])
    )
    return "-".join(parts)


def default_output_dir(cfg: TrainConfig, store_path: Path, run_name: str) -> Path:
    """Beside the store ("<store>-runs/<run_name>"); for a fetched store, Drive's
    MyDrive/whisper-runs/<run_name> when Drive is mounted (Colab), else runs/<run_name>."""
    if locate_store(cfg)[0] == "dir":
        return store_path.parent / f"{store_path.name}-runs" / run_name
    drive = Path(DRIVE_ROOT) / "MyDrive"
    return (drive / "whisper-runs" if drive.is_dir() else Path("runs")) / run_name


def checkpoint_complete(path: Path) -> bool:
    """True when a checkpoint dir holds model weights and a parseable trainer_state.json (the file
    the Trainer writes last)."""
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        return False
    try:
        state = json.loads((path / TRAINER_STATE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and "global_step" in state


def checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoint-<step> dirs in output_dir, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for path in output_dir.iterdir():
        match = CHECKPOINT_RE.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def last_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest checkpoint that was completely written (a killed save leaves a partial one)."""
    for _, path in reversed(checkpoints(output_dir)):
        if checkpoint_complete(path):
            return path
    return None


def remove_partial_checkpoints(output_dir: str | Path, keep: Path | None) -> list[Path]:
    """Delete incomplete checkpoint dirs newer than `keep`: the Trainer would otherwise count them
    when rotating (deleting a good one) and write into them. Returns what was removed."""
    keep_step = int(CHECKPOINT_RE.match(keep.name).group(1)) if keep else -1
    removed = []
    for step, path in checkpoints(output_dir):
        if step > keep_step and not checkpoint_complete(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (a temporary file, then os.replace)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(
        json.dumps(obj, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
    os.replace(tmp, path)


def finished_run(output_dir: Path, cfg: TrainConfig) -> dict | None:
    """The metrics of a finished run of this many steps in output_dir, else None."""
    metrics = read_json(output_dir / METRICS_FILE)
    if not isinstance(metrics, dict) or "final" not in metrics:
        return None
    if metrics.get("train", {}).get("global_step") != cfg.max_steps:
        return None
    has_model = any((output_dir / name).is_file() for name in WEIGHT_FILES[:4])
    return metrics if has_model else None


# ------------------------------------------------------------------------------- hardware choices


def resolve_precision(precision: str) -> str:
    """The precision to train in on this machine: "bf16", "fp16" or "fp32" ("auto": bf16 where the
    GPU has it, else fp16 on CUDA, fp32 on CPU)."""
    cuda = torch.cuda.is_available()
    if precision == "auto":
        if not cuda:
            return "fp32"
        # Native bf16 only (Ampere and newer, ROCm): torch's default also counts emulation, which
        # would pick a slow emulated bf16 on a Colab T4 instead of its fast fp16.
        native = torch.version.hip is not None or torch.cuda.get_device_capability()[0] >= 8
        return "bf16" if native else "fp16"
    if precision == "fp16" and not cuda:
        raise ValueError(
            "precision='fp16' needs a CUDA GPU (none found); use 'auto', 'bf16' or 'fp32'"
        )
    return precision


def use_checkpointing(cfg: TrainConfig) -> bool:
    """Whether this run recomputes activations (gradient_checkpointing None: on GPUs only)."""
    if cfg.gradient_checkpointing is None:
        return torch.cuda.is_available()
    return bool(cfg.gradient_checkpointing)


def default_workers() -> int:
    """DataLoader workers: on a GPU, enough that collating never waits; on CPU none."""
    if not torch.cuda.is_available():
        return 0
    return min(4, os.cpu_count() or 1)


def describe_device() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()})"


# ---------------------------------------------------------------------------------- model and data


def load_model(cfg: TrainConfig, language: str | None, task: str):
    """The Whisper model, configured for this run (SpecAugment, language/task, frozen encoder, LoRA)."""
    from transformers import WhisperForConditionalGeneration

    # float32 master weights (mixed precision autocasts), SDPA attention kernels.
    model = WhisperForConditionalGeneration.from_pretrained(
        cfg.model, dtype=torch.float32, attn_implementation="sdpa"
    )
    return configure_model(model, cfg, language, task)


def configure_model(model, cfg: TrainConfig, language: str | None, task: str):
    """Apply the run's settings to a Whisper model: SpecAugment, language/task in the generation
    config, the loss fix below, a frozen encoder, LoRA adapters (returns the peft model then)."""
    model.config.apply_spec_augment = cfg.mask_time_prob > 0 or cfg.mask_feature_prob > 0
    model.config.mask_time_prob = cfg.mask_time_prob
    model.config.mask_feature_prob = cfg.mask_feature_prob
    # Language and task live in the generation config (transformers 5); forced_decoder_ids is the
    # deprecated way and would fight with them.
    generation = model.generation_config
    generation.language = language
    generation.task = task
    generation.forced_decoder_ids = None
    model.config.forced_decoder_ids = None
    # Whisper's forward takes **kwargs but averages its loss itself, ignoring num_items_in_batch;
    # the Trainer, seeing **kwargs, would then skip dividing by gradient_accumulation and multiply
    # the loss by the number of processes (doubled gradients and logged loss on 2 GPUs).
    model.accepts_loss_kwargs = False
    if cfg.freeze_encoder:
        model.freeze_encoder()
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.lora_targets),
            bias="none",
        )
        model = get_peft_model(model, lora)
    return model


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
    from .store import StoreError

    have = store.manifest.get("splits", {})
    train_splits = [s for s in cfg.train_splits if have.get(s)]
    if not train_splits:
        raise StoreError(
            f"store {store.path}: no rows in train_splits={list(cfg.train_splits)} (it has {have})"
        )
    if len(train_splits) < len(cfg.train_splits):
        missing = sorted(set(cfg.train_splits) - set(train_splits))
        print(f"note: store {store.path} has no {missing} rows; training on {train_splits}")
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


def training_arguments(
    cfg: TrainConfig, output_dir: Path, precision: str, workers: int, **overrides
):
    """Seq2SeqTrainingArguments for this run, with the fast defaults: bf16 where the GPU has it,
    TF32 matmuls, fused AdamW, DataLoader workers with pinned memory on GPUs. `overrides` replace
    any argument (the benchmark turns evaluation and saving off)."""
    from transformers import Seq2SeqTrainingArguments
    from transformers.utils import is_torch_tf32_available

    cuda = torch.cuda.is_available()
    arguments = dict(
        output_dir=str(output_dir),
        run_name=cfg.run_name,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size or cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        max_steps=cfg.max_steps,
        # AdamW as in the blog, fused: one kernel updates all parameters (CUDA, and CPU on torch >= 2.4).
        optim="adamw_torch_fused",
        **checkpointing_arguments(use_checkpointing(cfg)),
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        # TF32 matmuls on Ampere+ for whatever runs in float32 (optimizer, loss, norms).
        tf32=True if cuda and is_torch_tf32_available() else None,
        eval_strategy="steps",
        eval_steps=cfg.eval_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        predict_with_generate=True,
        generation_max_length=cfg.generation_max_length,
        generation_num_beams=cfg.generation_num_beams,
        # TensorBoard is added by make_trainer with a fixed log dir (<output_dir>/runs).
        report_to=[r for r in cfg.report_to if r not in ("none", "tensorboard")] or "none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        # Without an accelerator, run on the CPU explicitly: that is also what makes torchrun /
        # accelerate launch start one CPU process per rank over gloo instead of silently training
        # the same model once per process.
        use_cpu=not cuda and not torch.backends.mps.is_available(),
        dataloader_num_workers=workers,
        dataloader_pin_memory=cuda,
        dataloader_persistent_workers=workers > 0,
        # Our dataset items carry compact frames the collator needs: keep every key.
        remove_unused_columns=False,
        label_names=["labels"],
        # Every parameter that requires grad is used in each step (frozen ones are not tracked).
        ddp_find_unused_parameters=False,
        load_best_model_at_end=False,
        push_to_hub=False,  # pushed once at the end, merged LoRA and model card included
    )
    arguments.update(overrides)
    return Seq2SeqTrainingArguments(**arguments)


def checkpointing_arguments(enabled: bool) -> dict:
    """Gradient checkpointing arguments under the names this transformers version uses (5.x
    renamed gradient_checkpointing to activation_checkpointing)."""
    from transformers import Seq2SeqTrainingArguments

    names = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}
    prefix = "activation" if "activation_checkpointing" in names else "gradient"
    # Non-reentrant checkpointing works with frozen encoders and LoRA (inputs without grad).
    return {
        f"{prefix}_checkpointing": enabled,
        f"{prefix}_checkpointing_kwargs": {"use_reentrant": False} if enabled else None,
    }


def tensorboard_callback(output_dir: Path):
    """TensorBoard logging into <output_dir>/runs, also for the baseline evaluation that runs
    before training (the stock callback would open ./runs in the working directory then)."""
    from transformers.integrations import TensorBoardCallback

    callback = TensorBoardCallback()
    callback.logging_dir = str(output_dir / "runs")
    return callback


def make_trainer(
    model, args, train_dataset, eval_dataset, processor, grouped: bool, cfg: TrainConfig
):
    """A Seq2SeqTrainer on the store; `grouped` reads the training set row group by row group."""
    from transformers import Seq2SeqTrainer

    from .store import RowGroupSampler

    class StoreTrainer(Seq2SeqTrainer):
        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if grouped and hasattr(dataset, "grouped_order"):
                # Shuffled row groups, shuffled rows inside each: every group is decoded once per
                # epoch instead of once per row when the store is bigger than the reader's cache.
                return RowGroupSampler(dataset, seed=self.args.data_seed or self.args.seed)
            return super()._get_train_sampler(dataset)

    collator = WhisperStoreCollator(
        decoder_start_token_id=_base_config(model).decoder_start_token_id
    )
    return StoreTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        processing_class=processor,
        compute_metrics=make_compute_metrics(processor.tokenizer),
        callbacks=[tensorboard_callback(Path(args.output_dir))]
        if "tensorboard" in cfg.report_to
        else None,
    )


def _base_config(model):
    return model.get_base_model().config if hasattr(model, "get_base_model") else model.config


def strip_prefix(metrics: dict, prefix: str = "eval_") -> dict:
    """{"eval_wer": 1} -> {"wer": 1}; keeps numbers only."""
    return {
        k.removeprefix(prefix): v
        for k, v in metrics.items()
        if k.startswith(prefix) and isinstance(v, (int, float))
    }


# --------------------------------------------------------------------------------------- results


def history_from_log(log_history: Sequence[dict], baseline: dict | None) -> list[dict]:
    """One row per evaluation: step, train loss (last logged), eval loss, WER, WER norm., CER.
    Step 0 is the base model when a baseline was measured."""
    rows = []
    if baseline:
        rows.append(
            {
                "step": 0,
                "train_loss": None,
                "eval_loss": baseline.get("loss"),
                **{m: baseline.get(m) for m in METRIC_NAMES},
            }
        )
    last_loss = None
    for entry in log_history:
        if "loss" in entry:
            last_loss = entry["loss"]
        if "eval_wer" in entry:
            rows.append(
                {
                    "step": entry["step"],
                    "train_loss": last_loss,
                    "eval_loss": entry.get("eval_loss"),
                    **{m: entry.get(f"eval_{m}") for m in METRIC_NAMES},
                }
            )
    return rows


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def wer_table_markdown(history: Sequence[dict]) -> str:
    """A markdown table of the per-evaluation history (WER/CER in %)."""
    lines = [
        "| step | train loss | eval loss | WER % | WER normalized % | CER % |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in history:
        label = "0 (base model)" if row["step"] == 0 else str(row["step"])
        lines.append(
            f"| {label} | {_fmt(row['train_loss'], 4)} | {_fmt(row['eval_loss'], 4)} | "
            f"{_fmt(row['wer'])} | {_fmt(row['wer_normalized'])} | {_fmt(row['cer'])} |"
        )
    return "\n".join(lines) + "\n"


def write_wer_tables(output_dir: Path, history: Sequence[dict]) -> None:
    (output_dir / "wer_table.md").write_text(wer_table_markdown(history), encoding="utf-8")
    with open(output_dir / "wer_table.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "train_loss", "eval_loss", *METRIC_NAMES])
        writer.writeheader()
        writer.writerows(history)


def _plot(path: Path, title: str, xlabel: str, ylabel: str, series: list[tuple]) -> Path:
    """One line chart saved as PNG; series are (label, [(x, y), ...], matplotlib format)."""
    # Figure without pyplot: no global backend to switch, renders with Agg in any environment.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, points, fmt in series:
        if points:
            ax.plot(*zip(*points, strict=True), fmt, label=label, lw=1.2)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_curves(
    output_dir: Path, log_history: Sequence[dict], history: Sequence[dict]
) -> list[Path]:
    """loss.png (training and eval loss per step) and wer.png (WER/CER per evaluation step)."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e]
    evals = [(r["step"], r["eval_loss"]) for r in history if r.get("eval_loss") is not None]
    rates = [
        (label, [(r["step"], r[name]) for r in history if r.get(name) is not None], "o-")
        for name, label in (("wer", "WER"), ("wer_normalized", "WER normalized"), ("cer", "CER"))
    ]
    return [
        _plot(
            output_dir / "loss.png",
            "Loss",
            "step",
            "loss",
            [("training loss", train, ".-"), ("eval loss", evals, "o-")],
        ),
        _plot(
            output_dir / "wer.png",
            "Error rates on the eval split",
            "step (0 = base model)",
            "%",
            rates,
        ),
    ]


def model_card(metrics: dict, manifest: dict) -> str:
    """The model card (README.md with Hub metadata): data, hyperparameters, baseline vs fine-tuned."""
    cfg = metrics["config"]
    base, final = metrics.get("baseline") or {}, metrics["final"]
    settings = manifest.get("settings", {})
    language = metrics.get("language")
    header = [
        "---",
        *([f"language: {language}"] if language else []),
        f"base_model: {cfg['model']}"
        if "/" in cfg["model"] and not Path(cfg["model"]).exists()
        else "",
        "library_name: transformers",
        "pipeline_tag: automatic-speech-recognition",
        "tags: [whisper, automatic-speech-recognition, whisper-finetune-pipeline]",
        "metrics: [wer, cer]",
        "---",
    ]
    lines = [line for line in header if line]
    title = metrics.get("run_name") or Path(metrics["output_dir"]).name
    lines += [
        f"# {title}",
        "",
        f"Whisper fine-tuned from `{cfg['model']}` for **{metrics.get('task')}** of "
        f"**{language or 'any language'}** speech, with this repository's training pipeline "
        f"({metrics['train']['global_step']} steps on {metrics.get('device')}).",
        "",
        f"## Results on the `{cfg['eval_split']}` split ({metrics.get('eval_rows')} clips)",
        "",
        "| model | WER % | WER normalized % | CER % |",
        "|---|---:|---:|---:|",
    ]
    if base:
        lines.append(
            f"| base `{cfg['model']}` (no fine-tuning) | {_fmt(base.get('wer'))} | "
            f"{_fmt(base.get('wer_normalized'))} | {_fmt(base.get('cer'))} |"
        )
    lines += [
        f"| fine-tuned (step {metrics['train']['global_step']}) | {_fmt(final.get('wer'))} | "
        f"{_fmt(final.get('wer_normalized'))} | {_fmt(final.get('cer'))} |",
        "",
        "WER normalized: after Whisper's BasicTextNormalizer (lower case, punctuation removed).",
        "",
        "## Training data",
        "",
        f"Feature store `{metrics['store']}` (made for `{settings.get('model')}`, "
        f"{settings.get('n_mels')} mel bins), sources: {', '.join(manifest.get('sources', {})) or '-'}.",
        "",
        "| source | " + " | ".join(manifest.get("splits", {})) + " |",
        "|---|" + "---:|" * len(manifest.get("splits", {})),
    ]
    for source, counts in manifest.get("sources", {}).items():
        lines.append(
            f"| {source} | "
            + " | ".join(str(counts.get(s, 0)) for s in manifest.get("splits", {}))
            + " |"
        )
    skipped = manifest.get("skipped") or {}
    lines += [
        "",
        f"Trained on splits {', '.join(cfg['train_splits'])}; evaluated on {cfg['eval_split']}."
        + (f" Skipped clips by reason: {skipped}." if skipped else ""),
        *([f"Augmentation: {settings.get('augment')}."] if settings.get("augment") else []),
        "",
        "## Hyperparameters",
        "",
        "| parameter | value |",
        "|---|---|",
    ]
    keys = [
        "learning_rate", "batch_size", "gradient_accumulation", "max_steps", "warmup_steps",
        "eval_steps", "gradient_checkpointing", "mask_time_prob", "mask_feature_prob",
        "freeze_encoder", "lora", "generation_max_length", "seed",
    ]  # fmt: skip
    if cfg["lora"]:
        keys[keys.index("lora") + 1 : keys.index("lora") + 1] = [
            "lora_r",
            "lora_alpha",
            "lora_targets",
        ]
    for key in keys:
        value = metrics.get(key, cfg[key]) if key == "gradient_checkpointing" else cfg[key]
        lines.append(
            f"| {key} | {', '.join(value) if isinstance(value, (list, tuple)) else value} |"
        )
    lines += [
        f"| precision | {metrics.get('precision')} |",
        f"| devices | {metrics.get('world_size', 1)} |",
        "",
        "## WER per evaluation step",
        "",
        wer_table_markdown(metrics.get("history", [])),
        "![loss](loss.png) ![wer](wer.png)",
        "",
        "## Usage",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'asr = pipeline("automatic-speech-recognition", model="{cfg.get("hub_model_id") or metrics["output_dir"]}")',
        'print(asr("clip.mp3")["text"])  # language and task come from the generation config',
        "```",
        "",
    ]
    return "\n".join(lines)


def write_results(
    output_dir: Path, metrics: dict, manifest: dict, log_history: Sequence[dict]
) -> None:
    """metrics.json, WER tables, plots and the model card (rank 0 only)."""
    write_wer_tables(output_dir, metrics["history"])
    plot_curves(output_dir, log_history, metrics["history"])
    (output_dir / "README.md").write_text(model_card(metrics, manifest), encoding="utf-8")
    write_json(output_dir / METRICS_FILE, metrics)


def push_results(output_dir: Path, repo_id: str) -> str:
    """Upload the final model, processor, card and results (not checkpoints) to the Hub."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(output_dir),
        ignore_patterns=["checkpoint-*", "checkpoint-*/**", ".*", "*.tmp"],
        commit_message="Fine-tuned with whisper-finetune-pipeline",
    )
    return f"https://huggingface.co/{repo_id}"


# ------------------------------------------------------------------------------------------ train


def prepare_run(cfg: TrainConfig):
    """Everything cheap and checkable before the model weights load: store, processor, check.

    Returns a dict with store, store_path, language, task, run_name, output_dir, processor.
    Raises StoreMismatchError before any weights are loaded when store and model do not match.
    """
    from transformers import WhisperConfig

    from .features import load_processor
    from .store import FeatureStore

    kind, path = locate_store(cfg)
    # The manifest of a store directory is checked before any copy; a fetched one after fetching.
    manifest = FeatureStore(path).manifest if kind == "dir" else None
    store_label = str(cfg.store)
    if manifest is None:
        store, store_path = open_store(cfg)
        manifest = store.manifest
    language, task = run_language_task(cfg, manifest)
    model_config = WhisperConfig.from_pretrained(cfg.model)
    processor = load_processor(cfg.model, language=language, task=task)
    check_store_matches_model(
        manifest, store_label, model_config, processor.tokenizer, cfg.model, language, task
    )
    if kind == "dir":
        store, store_path = None, path  # opened (maybe copied) later, once per machine
    run_name = cfg.run_name or default_run_name(cfg, language, task)
    output_dir = (
        Path(cfg.output_dir) if cfg.output_dir else default_output_dir(cfg, store_path, run_name)
    )
    return {
        "store": store,
        "store_path": store_path,
        "manifest": manifest,
        "language": language,
        "task": task,
        "run_name": run_name,
        "output_dir": output_dir.expanduser(),
        "processor": processor,
    }


def train(cfg: TrainConfig) -> dict:
    """Fine-tune as configured; returns the metrics dict also written to <output_dir>/metrics.json.

    Runs the same under `python`, `torchrun` and `accelerate launch` (rank 0 writes the results).
    Resumes from the last complete checkpoint in the output directory; a finished run returns its
    stored metrics without training again.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run = prepare_run(cfg)
    output_dir: Path = run["output_dir"]
    done = finished_run(output_dir, cfg)
    if done is not None:
        print(f"{output_dir}: already trained for {cfg.max_steps} steps; nothing to do", flush=True)
        return done

    precision = resolve_precision(cfg.precision)
    workers = cfg.dataloader_workers if cfg.dataloader_workers is not None else default_workers()
    cfg = cfg.replace(run_name=run["run_name"])
    args = training_arguments(cfg, output_dir, precision, workers)
    main = args.process_index == 0

    store = run["store"] or open_store(cfg)[0]
    # The main process tidies the output dir before any process looks for a checkpoint in it.
    with args.main_process_first(local=False, desc="checkpoints"):
        resume = last_complete_checkpoint(output_dir)
        if main:
            output_dir.mkdir(parents=True, exist_ok=True)
            for path in remove_partial_checkpoints(output_dir, resume):
                print(f"removed incomplete checkpoint {path}", flush=True)

    train_set, eval_set, grouped = load_datasets(store, cfg, workers)
    model = load_model(cfg, run["language"], run["task"])
    processor = run["processor"]
    trainer = make_trainer(model, args, train_set, eval_set, processor, grouped, cfg)
    if main:
        print(
            f"training {cfg.model} on {len(train_set)} rows of {store.path} "
            f"({'+'.join(cfg.train_splits)}), evaluating on {len(eval_set)} rows of "
            f"{cfg.eval_split}; {precision}, {describe_device()}, {args.world_size} process(es); "
            f"output {output_dir}",
            flush=True,
        )

    baseline = read_json(output_dir / BASELINE_FILE) if cfg.baseline else None
    if cfg.baseline and baseline is None:
        if main:
            print("evaluating the base model (baseline) ...", flush=True)
        baseline = strip_prefix(trainer.evaluate(metric_key_prefix="eval"))
        if main:
            write_json(output_dir / BASELINE_FILE, baseline)

    resumed_from = int(CHECKPOINT_RE.match(resume.name).group(1)) if resume else 0
    if main and resume:
        print(f"resuming from {resume} (step {resumed_from} of {cfg.max_steps})", flush=True)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    train_seconds = time.perf_counter() - start

    log_history = trainer.state.log_history
    step = trainer.state.global_step
    last_eval = next(
        (e for e in reversed(log_history) if "eval_wer" in e and e["step"] == step), None
    )
    final = (
        strip_prefix(last_eval)
        if last_eval
        else strip_prefix(trainer.evaluate(metric_key_prefix="eval"))
    )

    save_final_model(trainer, processor, output_dir, cfg)
    metrics = {
        "run_name": cfg.run_name,
        "model": cfg.model,
        "store": str(run["store_path"]),
        "output_dir": str(output_dir),
        "language": run["language"],
        "task": run["task"],
        "precision": precision,
        "gradient_checkpointing": use_checkpointing(cfg),
        "device": describe_device(),
        "world_size": args.world_size,
        "eval_rows": len(eval_set),
        "train_rows": len(train_set),
        "baseline": baseline,
        "final": final,
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
        write_results(output_dir, metrics, run["manifest"], log_history)
        print(wer_table_markdown(metrics["history"]), flush=True)
        if cfg.push_to_hub:
            metrics["hub_url"] = push_results(output_dir, cfg.hub_model_id)
            write_json(output_dir / METRICS_FILE, metrics)
    trainer.accelerator.wait_for_everyone()
    return metrics


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


# -------------------------------------------------------------------------------------------- CLI


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """["max_steps=10", "lora=true"] -> {"max_steps": 10, "lora": True} (values parsed as YAML)."""
    import yaml

    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {pair!r}: expected key=value")
        values[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return values


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """A TrainConfig from a YAML file (optional) plus key=value overrides."""
    import yaml

    values: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(
                f"{path}: expected a mapping of TrainConfig fields, got {type(loaded).__name__}"
            )
        values.update(loaded or {})
    values.update(parse_overrides(overrides))
    return TrainConfig.from_dict(values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m utils.training",
        description="Fine-tune Whisper on a feature store (resumes automatically; torchrun-ready).",
    )
    parser.add_argument("--config", help="YAML file of TrainConfig fields")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field, e.g. --set max_steps=100 (repeatable)",
    )
    args = parser.parse_args(argv)
    from .store import StoreError

    try:
        cfg = load_config(args.config, args.overrides)
        metrics = train(cfg)
    except (ValueError, FileNotFoundError, StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # rank 0 reports for all processes
    base, final = metrics.get("baseline") or {}, metrics["final"]
    print(
        f"done: {metrics['output_dir']}  WER {_fmt(base.get('wer'))} -> {_fmt(final.get('wer'))} "
        f"(normalized {_fmt(base.get('wer_normalized'))} -> {_fmt(final.get('wer_normalized'))})",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
