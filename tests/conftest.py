"""Shared fixtures: the repository root, the bundled sample corpus, and built artifacts."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# No test may reach the Hugging Face Hub: fail at once instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def sample_corpus() -> Path:
    return REPO_ROOT / "data" / "cv-corpus-sample"


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> Path:
    """A tiny random-weight Whisper (80 mel bins, real multilingual ids), built once per session."""
    from utils.tiny_whisper import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper") / "model")


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory, tiny_whisper, sample_corpus) -> Path:
    """A feature store of the sv-SE sample (24 train, 6 dev, 6 test clips) made with the tiny
    Whisper, in shards of 8 examples (train has 3). Shared by the session: copy it before changing it.
    """
    from utils.feature_pipeline import FeatureConfig, run_feature_pipeline

    store = tmp_path_factory.mktemp("sample-store") / "sv-SE-tiny"
    cfg = FeatureConfig(
        sources=str(sample_corpus / "sv-SE"),
        store=str(store),
        model=str(tiny_whisper),
        language="swedish",
        shard_size=8,
        workers=0,  # in this process: 36 clips take well under a second, a pool takes seconds
    )
    run_feature_pipeline(cfg)
    return store
