"""The model and the Hugging Face Seq2SeqTrainer of a run, with the fast defaults.

bf16 where the GPU has it (fp16 on a T4), TF32 matmuls, fused AdamW, SDPA attention, DataLoader
workers with pinned memory on GPUs, gradient checkpointing where memory is the limit.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from pathlib import Path

import torch

from ..errors import ConfigError
from ..features import fill_generation_config
from ..store import RowGroupSampler
from .config import TrainConfig
from .data import WhisperStoreCollator
from .metrics import make_compute_metrics


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
        raise ConfigError(
            "TrainConfig.precision='fp16' needs a CUDA GPU (none found); use 'auto', 'bf16' or 'fp32'"
        )
    return precision


def use_checkpointing(cfg: TrainConfig) -> bool:
    """Whether this run recomputes activations (gradient_checkpointing None: on GPUs only)."""
    if cfg.gradient_checkpointing is None:
        return torch.cuda.is_available()
    return bool(cfg.gradient_checkpointing)


def default_workers() -> int:
    """DataLoader workers: on a GPU, enough that collating never waits; on CPU none."""
    return min(4, os.cpu_count() or 1) if torch.cuda.is_available() else 0


def describe_device() -> str:
    """'1 x NVIDIA T4' or 'CPU (x86_64, 2 cores, torch threads 2)'."""
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()})"


def ensure_pad_token(tokenizer, model) -> None:
    """Give a checkpoint without a pad token its EOS as one (hub Whispers pad with <|endoftext|>):
    transformers 5.15's Trainer copies a None pad_token_id onto the model and stops."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    for config in (model.config, model.generation_config):
        if getattr(config, "pad_token_id", None) is None:
            config.pad_token_id = tokenizer.pad_token_id


def load_model(cfg: TrainConfig, run):
    """The Whisper model, configured for this run (SpecAugment, language/task, frozen encoder, LoRA)."""
    from transformers import WhisperForConditionalGeneration

    # float32 master weights (mixed precision autocasts), SDPA attention kernels.
    model = WhisperForConditionalGeneration.from_pretrained(
        run.model, dtype=torch.float32, attn_implementation="sdpa"
    )
    ensure_pad_token(run.processor.tokenizer, model)
    fill_generation_config(model.generation_config, run.processor.tokenizer, run.abilities)
    return configure_model(
        model,
        cfg,
        run.language if run.abilities.multilingual else None,
        run.task,
        run.abilities.multilingual,
    )


def configure_model(
    model, cfg: TrainConfig, language: str | None, task: str, multilingual: bool = True
):
    """Apply the run's settings to a Whisper model: SpecAugment, language/task in the generation
    config (none for an English-only checkpoint), the loss fix below, a frozen encoder, LoRA
    adapters (returns the peft model then)."""
    model.config.apply_spec_augment = cfg.mask_time_prob > 0 or cfg.mask_feature_prob > 0
    model.config.mask_time_prob = cfg.mask_time_prob
    model.config.mask_feature_prob = cfg.mask_feature_prob
    # Language and task live in the generation config (transformers 5); forced_decoder_ids is the
    # deprecated way and would fight with them. English-only checkpoints take neither.
    generation = model.generation_config
    generation.language = language if multilingual else None
    generation.task = task if multilingual else None
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


def training_arguments(
    cfg: TrainConfig, output_dir: Path, precision: str, workers: int, **overrides
):
    """Seq2SeqTrainingArguments for this run, with the fast defaults. `overrides` replace any
    argument (the benchmark turns evaluation and saving off)."""
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
        # Workers start from a clean server process, not fork(): by now this process runs threads
        # (torch, tokenizers), and fork() under threads may deadlock (Python 3.13 warns).
        dataloader_multiprocessing_context="forkserver" if workers > 0 else None,
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


def tensorboard_callback(output_dir: Path):
    """TensorBoard logging into <output_dir>/runs, also for the baseline evaluation that runs
    before training (the stock callback would open ./runs in the working directory then)."""
    from transformers.integrations import TensorBoardCallback

    callback = TensorBoardCallback()
    callback.logging_dir = str(output_dir / "runs")
    return callback


def base_config(model):
    """The Whisper config of a model, also under a peft wrapper."""
    return model.get_base_model().config if hasattr(model, "get_base_model") else model.config


def make_trainer(
    model, args, train_dataset, eval_dataset, processor, grouped: bool, cfg: TrainConfig
):
    """A Seq2SeqTrainer on the store; `grouped` reads the training set row group by row group."""
    from transformers import Seq2SeqTrainer

    class StoreTrainer(Seq2SeqTrainer):
        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if grouped and hasattr(dataset, "grouped_order"):
                # Shuffled row groups, shuffled rows inside each: every group is decoded once per
                # epoch instead of once per row when the store is bigger than the reader's cache.
                return RowGroupSampler(dataset, seed=self.args.data_seed or self.args.seed)
            return super()._get_train_sampler(dataset)

    ids = processor.tokenizer.convert_tokens_to_ids
    collator = WhisperStoreCollator(
        decoder_start_token_id=base_config(model).decoder_start_token_id,
        no_timestamps_id=ids("<|notimestamps|>"),
        prev_token_id=ids("<|startofprev|>"),
        timestamp_share=cfg.timestamp_share,
        prompt_share=cfg.prompt_share,
        seed=cfg.seed,
    )
    callbacks = (
        [tensorboard_callback(Path(args.output_dir))] if "tensorboard" in cfg.report_to else None
    )
    return StoreTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        processing_class=processor,
        compute_metrics=make_compute_metrics(processor.tokenizer),
        callbacks=callbacks,
    )
