"""Before any weights load: which model, language and task the run uses, and whether the store's
features and labels fit that model.

The store's manifest is the one source of truth: a run that names no model, language or task
takes the store's. What is named is checked twice, cheaply: what the checkpoint can decode
(an English-only `*.en` model refuses another language or translate, naming the checkpoint), and
whether the store's labels were made for it (mel bins, and the label prefix, which holds the
language and the task). A mismatch names the store, the model and what each says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConfigError, StoreMismatchError
from ..features import load_checkpoint, set_label_prefix
from ..whisper_lang import TRANSCRIBE, Abilities
from .config import TrainConfig


@dataclass(frozen=True)
class RunModel:
    """The checked model side of a run."""

    model: str  # hub id or folder
    language: str | None  # code ("sv"; "en" for an English-only checkpoint)
    task: str  # "transcribe" or "translate"
    abilities: Abilities  # what the checkpoint can decode
    processor: object  # its WhisperProcessor, label prefix set for language and task


def _describe(tokenizer, ids: Sequence[int]) -> str:
    size = len(tokenizer)
    return "".join(
        tokenizer.convert_ids_to_tokens(i) if 0 <= i < size else f"<id {i}?>" for i in ids
    )


def resolve_model(cfg: TrainConfig, manifest: dict) -> RunModel:
    """The run's model, language and task: the config's, else the store's; checked against what
    the checkpoint can decode (ModelError naming it)."""
    settings = manifest.get("settings", {})
    model = cfg.model or settings.get("model")
    if not model:
        raise ConfigError("TrainConfig.model: the store does not say its model; set model")
    processor, abilities = load_checkpoint(model)
    language = cfg.language if cfg.language is not None else settings.get("language")
    task = cfg.task or settings.get("task") or TRANSCRIBE
    language, task = abilities.check(model, language, task)
    set_label_prefix(processor, abilities, language, task)
    return RunModel(model, language, task, abilities, processor)


def check_store_matches_model(manifest: dict, store_name: str, model_config, run: RunModel) -> None:
    """Raise StoreMismatchError, naming the store and the model, when the store's features or
    labels were made for another model (mel bins, tokenizer ids) or another language/task."""
    settings = manifest.get("settings", {})
    store_model = settings.get("model", "an unknown model")
    n_mels, expected = settings.get("n_mels"), model_config.num_mel_bins
    if n_mels is not None and int(n_mels) != int(expected):
        raise StoreMismatchError(
            f"store {store_name} was made with {n_mels} mel bins for {store_model}, "
            f"model {run.model} expects {expected}: build a store for {run.model} "
            f"(notebook 01, model={run.model!r}) or train {store_model}"
        )
    tokenizer = run.processor.tokenizer
    prefix, model_prefix = settings.get("label_prefix"), list(tokenizer.prefix_tokens)
    if prefix is not None and list(prefix) != model_prefix:
        raise StoreMismatchError(
            f"store {store_name} has labels for language={settings.get('language')!r} "
            f"task={settings.get('task')!r} made with {store_model}'s tokenizer (prefix ids "
            f"{list(prefix)} = {_describe(tokenizer, prefix)}), but the run asks model {run.model} for "
            f"language={run.language!r} task={run.task!r} (prefix ids {model_prefix} = "
            f"{_describe(tokenizer, model_prefix)}): "
            f"build a store for {run.model} with that language and task, or leave them unset"
        )
    if model_prefix and model_prefix[0] != model_config.decoder_start_token_id:
        raise StoreMismatchError(
            f"model {run.model}: its tokenizer starts labels with {model_prefix[0]}, its config "
            f"decodes from {model_config.decoder_start_token_id}"
        )
    if prefix and max(prefix) >= int(model_config.vocab_size):
        raise StoreMismatchError(
            f"store {store_name} uses token ids up to {max(prefix)} ({store_model}), model "
            f"{run.model} has a vocabulary of {model_config.vocab_size}"
        )
