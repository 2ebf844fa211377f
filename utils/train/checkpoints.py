"""An output folder's checkpoints, and whether it already holds this run (finished or not).

The Trainer writes a checkpoint's weights first and trainer_state.json last, so weights plus a
parseable state file mark a finished checkpoint; anything else was cut short by a crash. The run's
settings are recorded in the folder when it starts, and a rerun with other settings is refused
rather than resumed from (or reported as) someone else's run.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

from ..errors import ConfigError
from ..store import read_json, write_json_atomic
from .config import RUN_ONLY_FIELDS, TrainConfig

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# One of these in a checkpoint folder means its weights were written (LoRA ones hold adapters).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
)
TRAINER_STATE = "trainer_state.json"
METRICS_FILE = "metrics.json"
BASELINE_FILE = "baseline_metrics.json"
RUN_FILE = "run_config.json"  # the settings the folder's run started with


def checkpoint_step(path: Path) -> int:
    """The step of a checkpoint-<step> folder."""
    return int(CHECKPOINT_RE.match(path.name).group(1))


def checkpoint_complete(path: Path) -> bool:
    """True when a checkpoint dir holds model weights and a parseable trainer_state.json (the file
    the Trainer writes last)."""
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        return False
    try:
        state = json.loads((path / TRAINER_STATE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and "global_step" in state


def checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoint-<step> dirs in output_dir, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [
        (checkpoint_step(p), p)
        for p in output_dir.iterdir()
        if CHECKPOINT_RE.match(p.name) and p.is_dir()
    ]
    return sorted(found)


def last_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest checkpoint that was completely written (a killed save leaves a partial one)."""
    for _, path in reversed(checkpoints(output_dir)):
        if checkpoint_complete(path):
            return path
    return None


def remove_partial_checkpoints(output_dir: str | Path, keep: Path | None) -> list[Path]:
    """Delete incomplete checkpoint dirs newer than `keep`: the Trainer would otherwise count them
    when rotating (deleting a good one) and write into them. Returns what was removed."""
    keep_step = checkpoint_step(keep) if keep else -1
    removed = []
    for step, path in checkpoints(output_dir):
        if step > keep_step and not checkpoint_complete(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def run_settings(
    cfg: TrainConfig, model: str, language: str | None, task: str, store_manifest: dict
) -> dict:
    """What decides a run's result: the config (without the fields that only say how it runs),
    the resolved model, language and task, and which store (its shards' checksums)."""
    values = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RUN_ONLY_FIELDS}
    values.update(model=model, language=language, task=task)
    values["store_shards"] = sorted(s["sha256"] for s in store_manifest.get("shards", []))
    return json.loads(json.dumps(values))


def check_same_run(output_dir: Path, settings: dict) -> None:
    """Refuse an output folder that holds a run with other settings (finished or not), naming the
    differences; record the settings when the folder has none yet."""
    recorded = read_json(output_dir / RUN_FILE)
    if recorded is None:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(output_dir / RUN_FILE, settings)
        return
    if recorded != settings:
        keys = sorted(
            k for k in set(recorded) | set(settings) if recorded.get(k) != settings.get(k)
        )
        shown = [k for k in keys if k != "store_shards"] + (
            ["store"] if "store_shards" in keys else []
        )
        was = ", ".join(f"{k}={recorded.get(k)!r}" for k in shown if k != "store")
        now = ", ".join(f"{k}={settings.get(k)!r}" for k in shown if k != "store")
        store_note = " (and another store)" if "store" in shown else ""
        raise ConfigError(
            f"{output_dir} holds a run with {was or 'the same options'}{store_note}; this run asks "
            f"for {now or 'the same options'}{store_note}. Choose another output_dir (or delete "
            "that folder to start over)"
        )


def finished_run(output_dir: Path, max_steps: int) -> dict | None:
    """The metrics of the run in output_dir when it finished `max_steps` steps (check_same_run
    says it is this run), else None."""
    metrics = read_json(output_dir / METRICS_FILE)
    if not isinstance(metrics, dict) or "final" not in metrics:
        return None
    if metrics.get("train", {}).get("global_step") != max_steps:
        return None
    has_model = any((output_dir / name).is_file() for name in WEIGHT_FILES[:4])
    return metrics if has_model else None
