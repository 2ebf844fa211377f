"""Integration tests of the one command (`python -m utils.pipeline`) and the README it documents.

The pipeline runs in a subprocess, exactly as a user starts it, with the tiny offline Whisper
(`--offline`) and CPU-sized parameters so a whole 01 -> 02 -> 03 run takes a minute or two.
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
    # app: random weights never stop on their own, so cap the tokens per window
    *("-p", "03:max_new_tokens", "4"),
]
EXPECTED_CLIPS = {"train": 24, "dev": 6, "test": 6}  # the sv-SE sample's TSVs


def pipeline_cmd(run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "utils.pipeline",
        "--offline",
        "--run-dir",
        str(run_dir),
        *QUICK,
        *extra,
    ]


def run(repo_root: Path, cmd: list[str], timeout: int = 900, **env) -> subprocess.CompletedProcess:
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


def check_artifacts(run_dir: Path, max_steps: int = MAX_STEPS) -> dict:
    """Every artifact of a finished run exists and agrees with the others."""
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("01", "02", "03"):
        executed = nbformat.read(summary["notebooks"][key], as_version=4)
        assert Path(summary["notebooks"][key]).parent == run_dir / "notebooks"
        assert executed.metadata["papermill"]["exception"] is None
    store = FeatureStore(run_dir / "store")
    assert store.manifest["splits"] == EXPECTED_CLIPS == summary["clips"]
    store.verify()
    model = run_dir / "model"
    assert (model / "config.json").exists() and (model / "model.safetensors").exists()
    assert (model / "README.md").exists() and (model / "wer.png").exists()
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["train"]["global_step"] == max_steps == summary["global_step"]
    assert summary["baseline"] == metrics["baseline"] and summary["fine_tuned"] == metrics["final"]
    for key in ("baseline", "fine_tuned"):  # percent; random weights: (nearly) every word is wrong
        assert summary[key]["wer"] > 50 and summary[key]["cer"] > 30
    answer = summary["app_answer"]
    assert isinstance(answer["text"], str) and answer["files"]
    return summary


@pytest.mark.slow
def test_one_command_runs_the_whole_pipeline(repo_root, tmp_path):
    proc = run(repo_root, pipeline_cmd(tmp_path / "run"))
    summary = check_artifacts(tmp_path / "run")
    assert "pipeline summary" in proc.stdout and summary["model"] in proc.stdout


@pytest.mark.slow
def test_chaos_kill_during_features_and_training_then_rerun(repo_root, tmp_path):
    run_dir = tmp_path / "run"
    store, model = run_dir / "store", run_dir / "model"

    kill_when(
        pipeline_cmd(run_dir),
        repo_root,
        lambda: any(store.glob("shards/*/*.json")),
        whole_group=True,
    )
    assert not (store / "manifest.json").exists(), "extraction had finished before the kill"

    kill_when(
        pipeline_cmd(run_dir),
        repo_root,
        lambda: any(model.glob("checkpoint-*/trainer_state.json")),
        whole_group=True,
    )
    assert not (model / "metrics.json").exists(), "training had finished before the kill"
    killed_at = max(int(p.name.split("-")[1]) for p in model.glob("checkpoint-*"))

    proc = run(repo_root, pipeline_cmd(run_dir))
    check_artifacts(run_dir)
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


def test_unreachable_hub_falls_back_to_the_tiny_whisper(tmp_path, capsys):
    from utils.pipeline import resolve_model

    # conftest sets HF_HUB_OFFLINE=1: the Hub cannot be reached from this process.
    model = resolve_model("openai/whisper-tiny", offline=False, run_dir=tmp_path)
    assert Path(model) == tmp_path / "tiny-whisper" and (Path(model) / "config.json").exists()
    err = capsys.readouterr().err
    assert "cannot reach the Hugging Face Hub" in err and "Going on with --offline" in err


def test_overrides_reach_the_right_notebook():
    from utils.pipeline import PipelineError, parse_overrides

    out = parse_overrides(
        [("02:max_steps", "7"), ("language", "italian")], {"features": {"fraction": 0.5}}
    )
    assert out["02"]["max_steps"] == 7 and out["01"]["fraction"] == 0.5
    assert out["01"]["language"] == out["02"]["language"] == out["03"]["language"] == "italian"
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
