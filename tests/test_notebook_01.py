"""Notebook 01 under papermill on the bundled sample corpus, with the tiny offline Whisper."""

import json

import nbformat
import papermill as pm
import pytest

from utils.store import FeatureStore

pytestmark = pytest.mark.slow


def test_notebook_01_builds_the_sample_store(repo_root, tiny_whisper, tmp_path):
    notebook = repo_root / "01_feature_pipeline.ipynb"
    # committed clean, with one parameters cell: tests/test_pipeline.py checks every notebook
    store = tmp_path / "store"
    executed = tmp_path / "01_executed.ipynb"
    pm.execute_notebook(
        str(notebook),
        str(executed),
        parameters={
            "model": str(tiny_whisper),
            "store": str(store),
            "shard_size": 10,
            "workers": 2,
        },
        cwd=str(repo_root),
        kernel_name="python3",
        progress_bar=False,
    )
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["splits"] == {"train": 24, "dev": 6, "test": 6}
    # language None: the Common Voice locale (sv-SE) says Swedish
    assert manifest["settings"]["language"] == "sv"
    assert manifest["settings"]["label_prefix"][1] == 50273  # <|sv|>
    assert manifest["settings"]["model"] == str(tiny_whisper)
    assert FeatureStore(store).verify()["rows"] == 36
    for png in (tmp_path / "store-durations.png", tmp_path / "store-log-mel.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

    text = "\n".join(
        output.get("text", "")
        for cell in nbformat.read(executed, as_version=4).cells
        for output in cell.get("outputs", [])
    )
    assert "train: 24 clips" in text and "skipped: none" in text and "store on disk:" in text
    images = [
        output
        for cell in nbformat.read(executed, as_version=4).cells
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]
    assert len(images) == 2
