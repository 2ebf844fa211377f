"""Notebook 02 under papermill: a few training steps of the tiny offline Whisper on the sample
store, checked for everything a run must leave behind."""

import json

import nbformat
import papermill as pm
import pytest
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from utils.featurize import FeatureConfig, run_feature_pipeline

pytestmark = pytest.mark.slow

PNG = b"\x89PNG\r\n\x1a\n"


def test_notebook_02_trains_evaluates_and_reports(repo_root, sample_corpus, tiny_whisper, tmp_path):
    notebook = repo_root / "02_training_pipeline.ipynb"
    # committed clean, with one parameters cell: tests/test_pipeline.py checks every notebook
    # What notebook 01 made last (here with augmentation, a non-default path) is what notebook 02
    # trains on when given no store, with the model and language that store was made for.
    store = tmp_path / "features" / "sv-augmented"
    run_feature_pipeline(
        FeatureConfig(
            source=str(sample_corpus / "sv-SE"), model=str(tiny_whisper), store=str(store),
            augment={"copies": 1, "p": 1.0}, workers=0,
        )
    )  # fmt: skip
    out = tmp_path / "run"
    executed = tmp_path / "02_executed.ipynb"
    pm.execute_notebook(
        str(notebook),
        str(executed),
        parameters={
            "output_dir": str(out),
            "max_steps": 4,
            "eval_steps": 2,
            "save_steps": 2,
            "batch_size": 2,
            "warmup_steps": 0,
            "eval_max_samples": 2,
            "generation_max_length": 6,
            "extra": {"logging_steps": 1, "dataloader_workers": 0, "longform_eval_minutes": 0},
        },
        cwd=str(repo_root),
        kernel_name="python3",
        progress_bar=False,
    )

    # Checkpoints every save_steps, complete (weights, optimizer, trainer state).
    for step in (2, 4):
        checkpoint = out / f"checkpoint-{step}"
        assert (checkpoint / "model.safetensors").is_file()
        assert (checkpoint / "optimizer.pt").is_file()
        assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == step

    # The final model and processor load from the output folder, language/task set for generate.
    model = WhisperForConditionalGeneration.from_pretrained(out)
    assert (model.generation_config.language, model.generation_config.task) == ("sv", "transcribe")
    assert WhisperProcessor.from_pretrained(out).feature_extractor.feature_size == 80

    # Baseline and fine-tuned metrics side by side, and the per-evaluation history.
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["store"] == str(store.resolve()) and metrics["model"] == str(tiny_whisper)
    assert metrics["train_rows"] == 24 * 2 + 6  # train with its augmented copies, plus dev
    for key in ("baseline", "final"):
        for name in ("wer", "wer_normalized", "cer", "loss"):
            assert metrics[key][name] >= 0, (key, name)
    assert [row["step"] for row in metrics["history"]] == [0, 2, 4]
    assert metrics["train"]["global_step"] == 4 and metrics["eval_rows"] == 2
    table = (out / "wer_table.md").read_text()
    assert "| 0 (base model) |" in table and "| 4 |" in table
    assert (out / "wer_table.csv").read_text().startswith("step,train_loss,eval_loss,wer,")

    for png in ("loss.png", "wer.png"):
        assert (out / png).read_bytes()[:8] == PNG and (out / png).stat().st_size > 10_000
    assert list((out / "runs").rglob("events.out.tfevents.*")), "no TensorBoard logs"

    card = (out / "README.md").read_text()
    assert card.startswith("---\nlanguage: sv\n")
    assert "no fine-tuning" in card and "fine-tuned (step 4)" in card
    assert f"{metrics['baseline']['wer']:.2f}" in card and f"{metrics['final']['wer']:.2f}" in card
    assert "| learning_rate | 1e-05 |" in card and "cv-sv-SE" in card

    # The executed notebook shows the comparison, the table and both plots.
    cells = nbformat.read(executed, as_version=4).cells
    outputs = [output for cell in cells for output in cell.get("outputs", [])]
    text = "\n".join(
        output.get("text", "") + output.get("data", {}).get("text/markdown", "")
        for output in outputs
    )
    assert "base model" in text and "fine-tuned" in text and "| 0 (base model) |" in text
    assert sum("image/png" in output.get("data", {}) for output in outputs) == 2
