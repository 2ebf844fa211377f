"""Notebook 01's stage: a corpus -> exact compact log-Mel features + labels -> a feature store.

    python -m utils.featurize --source data/cv-corpus-sample/sv-SE --model openai/whisper-small \\
        --store runs/features/sv-SE-whisper-small [--set fraction=0.1] [--config features.yaml]
"""

from .config import FeatureConfig
from .report import plot_durations, plot_log_mel, summarize
from .run import build_manifest, run_feature_pipeline
from .settings import default_store_path, store_path

__all__ = [
    "FeatureConfig",
    "build_manifest",
    "default_store_path",
    "plot_durations",
    "plot_log_mel",
    "run_feature_pipeline",
    "store_path",
    "summarize",
]
