"""What a run leaves for people: the WER table, the curves, the model card, metrics.json."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from ..store import write_json_atomic
from ..whisper_lang import language_name
from .checkpoints import METRICS_FILE
from .metrics import METRIC_NAMES

# The model card's body (Jinja, filled by huggingface_hub.ModelCard.from_template); its YAML
# header comes from ModelCardData, so the Hub reads the language, base model and metrics.
CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

Whisper fine-tuned from `{{ base }}` for **{{ task_words }}**, with this repository's training
pipeline ({{ steps }} steps on {{ device }}).

## Results on the `{{ eval_split }}` split ({{ eval_rows }} clips)

| model | WER % | WER normalized % | CER % |
|---|---:|---:|---:|
{% if baseline %}| base `{{ base }}` (no fine-tuning) | {{ baseline.wer }} | {{ baseline.wer_normalized }} | {{ baseline.cer }} |
{% endif %}| fine-tuned (step {{ steps }}) | {{ final.wer }} | {{ final.wer_normalized }} | {{ final.cer }} |

{% for name, result in extra.items() %}| `{{ name }}` split: base | {{ result.baseline.wer }} | {{ result.baseline.wer_normalized }} | {{ result.baseline.cer }} |
| `{{ name }}` split: fine-tuned | {{ result.final.wer }} | {{ result.final.wer_normalized }} | {{ result.final.cer }} |
{% endfor %}
WER normalized: after Whisper's BasicTextNormalizer (lower case, punctuation removed).

## Training data

Feature store `{{ store }}` (made for `{{ store_model }}`, {{ n_mels }} mel bins). Trained on
splits {{ train_splits }}; evaluated on {{ eval_split }}.{% if skipped %} Skipped clips by reason: {{ skipped }}.{% endif %}{% if augment %}
Augmentation: {{ augment }}.{% endif %}

| source | {{ splits | join(" | ") }} |
|---|{% for _ in splits %}---:|{% endfor %}
{% for source, counts in sources.items() %}| {{ source }} | {% for split in splits %}{{ counts.get(split, 0) }} | {% endfor %}
{% endfor %}
## Hyperparameters

| parameter | value |
|---|---|
{% for key, value in hyperparameters %}| {{ key }} | {{ value }} |
{% endfor %}
## WER per evaluation step

{{ wer_table }}
![loss](loss.png) ![wer](wer.png)

## Usage

```python
from transformers import pipeline

asr = pipeline("automatic-speech-recognition", model="{{ usage_id }}")
print(asr("clip.mp3")["text"])  # language and task come from the generation config
```
"""


def history_from_log(log_history: Sequence[dict], baseline: dict | None) -> list[dict]:
    """One row per evaluation: step, the training loss logged at that step (None when none was
    logged there), eval loss, WER, WER normalized, CER. Step 0 is the base model."""
    rows = []
    if baseline:
        rows.append(
            {
                "step": 0,
                "train_loss": None,
                "eval_loss": baseline.get("loss"),
                **{m: baseline.get(m) for m in METRIC_NAMES},
            }
        )
    losses = {entry["step"]: entry["loss"] for entry in log_history if "loss" in entry}
    for entry in log_history:
        if "eval_wer" in entry:
            rows.append(
                {
                    "step": entry["step"],
                    "train_loss": losses.get(entry["step"]),
                    "eval_loss": entry.get("eval_loss"),
                    **{m: entry.get(f"eval_{m}") for m in METRIC_NAMES},
                }
            )
    return rows


def fmt(value, digits: int = 2) -> str:
    """A number for a table: '-' for missing or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def wer_table_markdown(history: Sequence[dict]) -> str:
    """A markdown table of the per-evaluation history (WER/CER in %)."""
    lines = [
        "| step | train loss | eval loss | WER % | WER normalized % | CER % |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in history:
        label = "0 (base model)" if row["step"] == 0 else str(row["step"])
        lines.append(
            f"| {label} | {fmt(row['train_loss'], 4)} | {fmt(row['eval_loss'], 4)} | "
            f"{fmt(row['wer'])} | {fmt(row['wer_normalized'])} | {fmt(row['cer'])} |"
        )
    return "\n".join(lines) + "\n"


def write_wer_tables(output_dir: Path, history: Sequence[dict]) -> None:
    """wer_table.md and wer_table.csv."""
    (output_dir / "wer_table.md").write_text(wer_table_markdown(history), encoding="utf-8")
    with open(output_dir / "wer_table.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "train_loss", "eval_loss", *METRIC_NAMES])
        writer.writeheader()
        writer.writerows(history)


def _plot(path: Path, title: str, xlabel: str, ylabel: str, series: list[tuple]) -> Path:
    """One line chart saved as PNG; series are (label, [(x, y), ...], matplotlib format)."""
    # Figure without pyplot: no global backend to switch, renders with Agg in any environment.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, points, style in series:
        if points:
            ax.plot(*zip(*points, strict=True), style, label=label, lw=1.2)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_curves(
    output_dir: Path, log_history: Sequence[dict], history: Sequence[dict]
) -> list[Path]:
    """loss.png (training and eval loss per step) and wer.png (WER/CER per evaluation step)."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e]
    evals = [(r["step"], r["eval_loss"]) for r in history if r.get("eval_loss") is not None]
    rates = [
        (label, [(r["step"], r[name]) for r in history if r.get(name) is not None], "o-")
        for name, label in (("wer", "WER"), ("wer_normalized", "WER normalized"), ("cer", "CER"))
    ]
    return [
        _plot(
            output_dir / "loss.png",
            "Loss",
            "step",
            "loss",
            [("training loss", train, ".-"), ("eval loss", evals, "o-")],
        ),
        _plot(
            output_dir / "wer.png",
            "Error rates on the eval split",
            "step (0 = base model)",
            "%",
            rates,
        ),
    ]


def task_words(task: str | None, language: str | None) -> str:
    """'transcription of Swedish speech', 'translation of Swedish speech into English'."""
    what = language_name(language) + " speech" if language else "speech in any language"
    return (
        f"translation of {what} into English" if task == "translate" else f"transcription of {what}"
    )


def model_card(metrics: dict, manifest: dict) -> str:
    """The model card (README.md with Hub metadata): data, hyperparameters, baseline vs fine-tuned."""
    from huggingface_hub import ModelCard, ModelCardData

    cfg, settings = metrics["config"], manifest.get("settings", {})
    model, language = metrics["model"], metrics.get("language")
    is_hub_id = "/" in model and not Path(model).exists()
    data = ModelCardData(
        language=language,
        base_model=model if is_hub_id else None,
        library_name="transformers",
        pipeline_tag="automatic-speech-recognition",
        tags=["whisper", "automatic-speech-recognition", "whisper-finetune-pipeline"],
        metrics=["wer", "cer"],
    )
    keys = [
        "learning_rate",
        "batch_size",
        "gradient_accumulation",
        "max_steps",
        "warmup_steps",
        "eval_steps",
    ]
    keys += ["mask_time_prob", "mask_feature_prob", "freeze_encoder", "lora"]
    keys += ["lora_r", "lora_alpha", "lora_targets"] if cfg["lora"] else []
    keys += ["generation_max_length", "seed"]
    hyper = [(k, ", ".join(cfg[k]) if isinstance(cfg[k], (list, tuple)) else cfg[k]) for k in keys]
    hyper += [
        ("gradient_checkpointing", metrics.get("gradient_checkpointing")),
        ("precision", metrics.get("precision")),
        ("devices", metrics.get("world_size", 1)),
    ]
    table = lambda m: {k: fmt((m or {}).get(k)) for k in METRIC_NAMES}  # noqa: E731
    rates = lambda m: table(m) if m else None  # noqa: E731
    card = ModelCard.from_template(
        data,
        template_str=CARD_TEMPLATE,
        title=metrics.get("run_name") or Path(metrics["output_dir"]).name,
        base=model,
        task_words=task_words(metrics.get("task"), language),
        steps=metrics["train"]["global_step"],
        device=metrics.get("device"),
        eval_split=cfg["eval_split"],
        eval_rows=metrics.get("eval_rows"),
        baseline=rates(metrics.get("baseline")),
        final=rates(metrics["final"]),
        extra={
            name: {"baseline": table(r.get("baseline")), "final": table(r.get("final"))}
            for name, r in (metrics.get("extra_evaluations") or {}).items()
        },
        store=metrics["store"],
        store_model=settings.get("model"),
        n_mels=settings.get("n_mels"),
        train_splits=", ".join(cfg["train_splits"]),
        skipped=manifest.get("skipped") or None,
        augment=settings.get("augment"),
        splits=list(manifest.get("splits", {})),
        sources=manifest.get("sources", {}),
        hyperparameters=hyper,
        wer_table=wer_table_markdown(metrics.get("history", [])),
        usage_id=cfg.get("hub_model_id") or metrics["output_dir"],
    )
    return str(card)


def write_results(
    output_dir: Path, metrics: dict, manifest: dict, log_history: Sequence[dict]
) -> None:
    """metrics.json, WER tables, plots and the model card (rank 0 only)."""
    write_wer_tables(output_dir, metrics["history"])
    plot_curves(output_dir, log_history, metrics["history"])
    (output_dir / "README.md").write_text(model_card(metrics, manifest), encoding="utf-8")
    write_json_atomic(output_dir / METRICS_FILE, metrics)


def push_results(output_dir: Path, repo_id: str) -> str:
    """Upload the final model, processor, card and results (not checkpoints) to the Hub."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(output_dir),
        ignore_patterns=["checkpoint-*", "checkpoint-*/**", ".*", "*.tmp"],
        commit_message="Fine-tuned with whisper-finetune-pipeline",
    )
    return f"https://huggingface.co/{repo_id}"
