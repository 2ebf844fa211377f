"""Notebook 02's stage: fine-tune Whisper on a feature store, with WER evaluation, automatic
resume and multi-GPU (`python -m utils.train`, `torchrun -m utils.train`)."""

from .checkpoints import checkpoint_complete, last_complete_checkpoint
from .checks import check_store_matches_model, resolve_model
from .config import TrainConfig
from .data import WhisperStoreCollator, load_datasets
from .metrics import text_metrics
from .run import prepare_run, train
from .trainer import describe_device

__all__ = [
    "TrainConfig",
    "WhisperStoreCollator",
    "check_store_matches_model",
    "checkpoint_complete",
    "describe_device",
    "last_complete_checkpoint",
    "load_datasets",
    "prepare_run",
    "resolve_model",
    "text_metrics",
    "train",
]
