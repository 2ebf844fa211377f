"""Integration tests of the one command (`python -m utils.pipeline`) and the README it documents.

The pipeline runs in a subprocess, exactly as a user starts it. The main test runs it offline with
its own defaults on OpenAI's real tiny.en and fails when fine-tuning does not learn: the held-out
sentences' WER must fall far below the zero-shot WER, and a second held-out set whose words never
occur in training must not get worse (no forgetting). The chaos test uses the tiny random Whisper
and CPU-sized parameters so that its three runs stay quick.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from scripts.readme_params import render
from utils.store import FeatureStore

from .killing import kill_when

MAX_STEPS = 6
QUICK = [
    # features: one clip per shard and one worker, so a kill lands mid-extraction
    *("-p", "01:shard_size", "1", "-p", "01:workers", "1"),
    # training: a checkpoint every 2 steps, a short evaluation
    *("-p", "02:max_steps", str(MAX_STEPS), "-p", "02:batch_size", "4"),
    *("-p", "02:eval_steps", "3", "-p", "02:save_steps", "2", "-p", "02:warmup_steps", "1"),
    *("-p", "02:eval_max_samples", "3", "-p", "02:generation_max_length", "8"),
    *("-p", "02:extra", "{longform_eval_minutes: 0}"),  # random weights: tested on tiny.en
    # app: random weights never stop on their own, so cap the tokens per window
    *("-p", "03:max_new_tokens", "4", "-p", "03:strategy", "windows"),
]
EXPECTED_CLIPS = {"train": 24, "dev": 6, "test": 6}  # the sv-SE sample's TSVs
# Real weights, the one command's defaults (30 steps): the normalized WER on the held-out test
# sentences must end at most this share of the zero-shot WER (measured: 21 % -> 14 %).
LEARNED = 0.8


def pipeline_cmd(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "utils.pipeline", "--run-dir", str(run_dir), *extra]


def run(repo_root: Path, cmd: list[str], timeout: int = 1200, **env) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd,
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def check_artifacts(run_dir: Path, clips: dict, max_steps: int) -> dict:
    """Every artifact of a finished run exists and agrees with the others."""
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("01", "02", "03"):
        executed = nbformat.read(summary["notebooks"][key], as_version=4)
        assert Path(summary["notebooks"][key]).parent == run_dir / "notebooks"
        assert executed.metadata["papermill"]["exception"] is None
    store = FeatureStore(run_dir / "store")
    assert store.manifest["splits"] == clips == summary["clips"]
    store.verify()
    model = run_dir / "model"
    assert (model / "config.json").exists() and (model / "model.safetensors").exists()
    assert (model / "README.md").exists() and (model / "wer.png").exists()
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["train"]["global_step"] == max_steps == summary["global_step"]
    assert summary["baseline"] == metrics["baseline"] and summary["fine_tuned"] == metrics["final"]
    answer = summary["app_answer"]
    assert isinstance(answer["text"], str) and answer["files"]
    return summary


@pytest.mark.slow
def test_one_command_fine_tunes_real_weights_and_learns(repo_root, tiny_en, tmp_path):
    run_dir = tmp_path / "run"
    proc = run(repo_root, pipeline_cmd(run_dir, "--offline"))
    clips = {"train": 96, "dev": 12, "test": 24, "unseen": 24}  # the English sample
    summary = check_artifacts(run_dir, clips, max_steps=30)
    assert summary["model"] == str(tiny_en) and summary["language"] == "en"
    zero_shot, tuned = (
        summary["baseline"]["wer_normalized"],
        summary["fine_tuned"]["wer_normalized"],
    )
    print(f"held-out test sentences: normalized WER {zero_shot:.1f} % -> {tuned:.1f} %")
    assert 5 < zero_shot < 60  # real weights transcribe; they do not know this voice yet
    assert tuned <= LEARNED * zero_shot  # fine-tuning learned
    unseen = summary["extra_evaluations"]["unseen"]
    before, after = unseen["baseline"]["wer_normalized"], unseen["final"]["wer_normalized"]
    print(f"held-out set of unseen words: normalized WER {before:.1f} % -> {after:.1f} %")
    assert after <= before  # nothing forgotten
    # Long audio still works after fine-tuning (timestamp labels and previous text in training).
    longform = summary["extra_evaluations"]["long-form"]
    before, after = longform["baseline"]["wer_normalized"], longform["final"]["wer_normalized"]
    print(f"long-form recording of the test clips: normalized WER {before:.1f} % -> {after:.1f} %")
    assert after <= before
    assert "pipeline summary" in proc.stdout and "tiny.en" in proc.stdout
    card = (run_dir / "model" / "README.md").read_text()
    assert "transcription of English speech" in card and "`unseen` split" in card
    # The app served the fine-tuned model: English, from its own generation config.
    assert "`en`" in summary["app_answer"]["summary"] and summary["app_answer"]["text"].strip()


@pytest.mark.slow
def test_chaos_kill_during_features_and_training_then_rerun(repo_root, tiny_whisper, tmp_path):
    run_dir = tmp_path / "run"
    store, model = run_dir / "store", run_dir / "model"

    cmd = pipeline_cmd(run_dir, "--model", str(tiny_whisper), *QUICK)
    kill_when(cmd, repo_root, lambda: any(store.glob("shards/*/*.json")), whole_group=True)
    assert not (store / "manifest.json").exists(), "extraction had finished before the kill"

    kill_when(
        cmd, repo_root, lambda: any(model.glob("checkpoint-*/trainer_state.json")), whole_group=True
    )
    assert not (model / "metrics.json").exists(), "training had finished before the kill"
    killed_at = max(int(p.name.split("-")[1]) for p in model.glob("checkpoint-*"))

    proc = run(repo_root, cmd)
    check_artifacts(run_dir, EXPECTED_CLIPS, MAX_STEPS)
    metrics = json.loads((model / "metrics.json").read_text())
    assert 0 < metrics["train"]["resumed_from_step"] <= killed_at + 2
    assert metrics["train"]["steps_this_run"] == MAX_STEPS - metrics["train"]["resumed_from_step"]
    ids = FeatureStore(store).column("id", splits=["train", "dev", "test"])
    assert len(ids) == len(set(ids)) == sum(EXPECTED_CLIPS.values())
    assert "nothing to do" in proc.stdout or "pipeline summary" in proc.stdout


def test_unreachable_hub_says_so_plainly(repo_root, tmp_path):
    # A closed port on this machine stands in for a Hub that cannot be reached.
    env = {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty cache: nothing to fall back on
    cmd = [
        sys.executable,
        "-m",
        "utils.pipeline",
        "--no-fallback",
        "--run-dir",
        str(tmp_path / "run"),
    ]
    start = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=repo_root, capture_output=True, text=True, timeout=120, env={**os.environ, **env}
    )
    assert proc.returncode == 2
    assert "cannot reach the Hugging Face Hub" in proc.stderr and "--offline" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - start < 60


def test_unreachable_hub_falls_back_to_real_tiny_en(tiny_en, capsys):
    from utils.pipeline import default_source, resolve_model

    # conftest sets HF_HUB_OFFLINE=1: the Hub cannot be reached from this process.
    model = resolve_model("openai/whisper-tiny", offline=False)
    assert Path(model) == tiny_en and (Path(model) / "config.json").exists()
    err = capsys.readouterr().err
    assert "cannot reach the Hugging Face Hub" in err and "Going on with --offline" in err
    assert default_source(model).name == "en"  # an English-only model trains on English


def test_overrides_reach_the_right_notebook():
    from utils.pipeline import PipelineError, parse_overrides

    out = parse_overrides(
        [("02:max_steps", "7"), ("language", "italian")], {"features": {"fraction": 0.5}}
    )
    assert out["02"]["max_steps"] == 7 and out["01"]["fraction"] == 0.5
    assert out["01"]["language"] == out["02"]["language"] == out["03"]["language"] == "italian"
    assert parse_overrides([("02:learning_rate", "1e-5")], None)["02"]["learning_rate"] == "1e-5"
    with pytest.raises(PipelineError, match="02_training_pipeline.ipynb has no parameter 'nope'"):
        parse_overrides([("02:nope", "1")], None)
    with pytest.raises(PipelineError, match="no notebook has a parameter"):
        parse_overrides([("nope", "1")], None)


def test_readme_parameter_tables_match_the_notebooks(repo_root):
    readme = (repo_root / "README.md").read_text()
    for notebook in (
        "01_feature_pipeline.ipynb",
        "02_training_pipeline.ipynb",
        "03_inference_app.ipynb",
    ):
        assert f"<!-- params: {notebook} -->" in readme
    assert render(readme) == readme, "run: python scripts/readme_params.py"


def test_notebooks_are_committed_clean(repo_root):
    for path in sorted(repo_root.glob("0*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name
        source = "\n".join(c.source for c in nb.cells)
        assert "/Users/" not in source and "/home/" not in source, path.name
