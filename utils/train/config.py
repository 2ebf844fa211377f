"""TrainConfig: everything a training run needs, declared once.

Notebook 02's parameters cell and `python -m utils.train` (flags, `--config run.yaml`, `--set`)
follow from it. `store`, `model`, `language` and `task` left at None come from elsewhere: the
latest store notebook 01 made, and that store's manifest (which model, language and task its
labels were made for).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import coerce
from ..errors import ConfigError
from ..whisper_lang import EVAL_SPLIT, TRAIN_SPLITS, check_task

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
# Fields that change how a run is carried out or reported, not what it learns: a rerun may change
# them and still resume (or find its finished result). max_steps may grow: the run goes on.
RUN_ONLY_FIELDS = (
    "store",
    "max_steps",
    "eval_steps",
    "save_steps",
    "save_total_limit",
    "logging_steps",
    "output_dir",
    "eval_batch_size",
    "dataloader_workers",
    "baseline",
    "push_to_hub",
    "hub_model_id",
    "copy_to_local",
    "local_dir",
    "report_to",
)


@dataclass(frozen=True)
class TrainConfig:
    """How to fine-tune Whisper on a feature store; each field is a parameter of notebook 02."""

    # store folder, Drive path, packed .tar, or gdown Drive id/URL; None: the latest store
    # notebook 01 made (utils.store.latest_store)
    store: str | None = None
    # hub id or local checkpoint folder to fine-tune; None: the model the store was made for
    model: str | None = None
    # language of the transcripts (Whisper name or code); None: the store's
    language: str | None = None
    # "transcribe" or "translate" (to English); None: the store's
    task: str | None = None
    # None: beside the store, <store>-runs/<model name>-<language> (on Drive in Colab); for a
    # fetched store MyDrive/whisper-runs/<run name> when Drive is mounted, else runs/<run name>
    output_dir: str | None = None
    # name of the run (output folder, model card title); None: "<model name>-<language>"
    run_name: str | None = None
    # store splits to train on (Common Voice practice: train + dev)
    train_splits: tuple[str, ...] = TRAIN_SPLITS
    # the split to evaluate on
    eval_split: str = EVAL_SPLIT
    # only these store sources (None: all of them), for training and evaluation
    sources: tuple[str, ...] | None = None
    # more store splits to report WER on, base model and fine-tuned (e.g. a second held-out set)
    extra_eval_splits: tuple[str, ...] = ()
    # share of training labels given the clip's speech start and end as timestamp tokens, so the
    # model keeps predicting timestamps (long-form transcription seeks by them); distil-whisper: 0.2
    timestamp_share: float = 0.2
    # share of training examples given another clip's text as previous text, so the model keeps
    # using context (long-form transcription conditions on it); distil-whisper: 0.1
    prompt_share: float = 0.1
    # also report WER on a recording stitched from this many minutes of the eval split's audio
    # (base model and fine-tuned), transcribed long-form; 0: off. Needs the sources' audio on disk
    longform_eval_minutes: float = 2.0
    # optimizer steps
    max_steps: int = 4000
    # clips per device per step (the Whisper fine-tuning blog's 16 for whisper-small)
    batch_size: int = 16
    # steps accumulated per optimizer step (bigger effective batch in the same memory)
    gradient_accumulation: int = 1
    # peak learning rate (linear warm-up, then linear decay)
    learning_rate: float = 1e-5
    # warm-up steps
    warmup_steps: int = 500
    # evaluate WER every this many steps
    eval_steps: int = 500
    # write a checkpoint every this many steps (resume point)
    save_steps: int = 500
    # checkpoints kept (oldest deleted first); None: all (whisper-small's are ~2.8 GB each)
    save_total_limit: int | None = 2
    # log the training loss every this many steps (TensorBoard, loss curve)
    logging_steps: int = 25
    # "auto" (bf16/fp16 on GPU, fp32 on CPU), "bf16", "fp16" or "fp32"
    precision: str = "auto"
    # recompute activations in the backward pass (~30 % slower; whisper-small at batch 16 then
    # fits a 16 GB T4); None: on with a GPU, off on CPU; False: faster
    gradient_checkpointing: bool | None = None
    # SpecAugment: share of time steps masked while training (e.g. 0.05)
    mask_time_prob: float = 0.0
    # SpecAugment: share of mel channels masked
    mask_feature_prob: float = 0.0
    # train the decoder only (the encoder is kept as it is): less memory, much faster on a CPU
    freeze_encoder: bool = False
    # LoRA adapters (peft) instead of full fine-tuning; merged into the saved model
    lora: bool = False
    # LoRA rank
    lora_r: int = 32
    # LoRA scaling (alpha / r multiplies the adapters' output)
    lora_alpha: int = 64
    # dropout on the LoRA adapters' input
    lora_dropout: float = 0.05
    # modules that get adapters
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    # longest transcript generated at evaluation (tokens)
    generation_max_length: int = 225
    # beam size at evaluation (1: greedy, as the blog)
    generation_num_beams: int = 1
    # batch size of evaluation (generate); None: batch_size
    eval_batch_size: int | None = None
    # evaluate on the first N clips of the eval split only (None: all)
    eval_max_samples: int | None = None
    # DataLoader worker processes; None: 4 (or the cores there are) on a GPU, 0 on CPU
    dataloader_workers: int | None = None
    # evaluate the untouched base model first, for baseline vs fine-tuned
    baseline: bool = True
    # upload the final model, card and results to the Hub
    push_to_hub: bool = False
    # e.g. "your-name/whisper-small-sv" (log in first: huggingface-cli login)
    hub_model_id: str | None = None
    # data order and initialisation seed
    seed: int = 42
    # copy the store to local disk before training; None: when it is on Google Drive
    copy_to_local: bool | None = None
    # where local copies and fetched stores go; None: <temp dir>/feature-stores/<name>
    local_dir: str | None = None
    # where training logs go: "tensorboard", "wandb", ... or "none"
    report_to: tuple[str, ...] = ("tensorboard",)

    def __post_init__(self):
        coerce(self)

        def fail(name: str, why: str):
            raise ConfigError(f"TrainConfig.{name}={getattr(self, name)!r}: {why}")

        if self.precision not in PRECISIONS:
            fail("precision", f"must be one of {PRECISIONS}")
        check_task(self.task, "TrainConfig.task")
        positive = ("batch_size", "gradient_accumulation", "max_steps", "eval_steps", "save_steps")
        for name in (*positive, "logging_steps", "generation_max_length", "generation_num_beams"):
            if getattr(self, name) < 1:
                fail(name, "must be a positive integer")
        if self.warmup_steps < 0:
            fail("warmup_steps", "must be an integer >= 0")
        for name in ("eval_batch_size", "eval_max_samples", "save_total_limit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                fail(name, "must be a positive integer or None")
        if self.learning_rate <= 0:
            fail("learning_rate", "must be a number > 0")
        if self.longform_eval_minutes < 0:
            fail("longform_eval_minutes", "must be >= 0")
        for name in (
            "mask_time_prob",
            "mask_feature_prob",
            "lora_dropout",
            "timestamp_share",
            "prompt_share",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                fail(name, "must be a probability in [0, 1]")
        if self.lora and (self.lora_r < 1 or self.lora_alpha <= 0 or not self.lora_targets):
            fail("lora_r", "LoRA needs lora_r >= 1, lora_alpha > 0 and at least one target module")
        if self.dataloader_workers is not None and self.dataloader_workers < 0:
            fail("dataloader_workers", "must be >= 0 or None")
        if self.push_to_hub and not self.hub_model_id:
            fail(
                "hub_model_id", "push_to_hub needs hub_model_id, e.g. 'your-name/whisper-small-sv'"
            )
        if not self.train_splits:
            fail("train_splits", "name at least one split to train on")
