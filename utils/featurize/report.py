"""What a person looks at after a run: a summary, clip durations, one clip's log-Mel window."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..features import expand_log_mel
from ..store import FeatureStore


def summarize(manifest: dict) -> str:
    """A few lines for people: rows and hours per split, per source, skipped by reason, size."""
    lines = []
    for split, rows in manifest["splits"].items():
        hours = manifest.get("seconds", {}).get(split, 0.0) / 3600
        lines.append(f"{split:>6}: {rows} clips, {hours:.2f} h")
    for source, splits in manifest["sources"].items():
        lines.append(f"source {source}: " + ", ".join(f"{k} {v}" for k, v in splits.items()))
    skipped = manifest["skipped"]
    lines.append(
        "skipped: " + (", ".join(f"{k} {v}" for k, v in skipped.items()) if skipped else "none")
    )
    lines.append(f"store: {len(manifest['shards'])} shards, {manifest['bytes'] / 1e6:.1f} MB")
    return "\n".join(lines)


def plot_durations(store: str | Path, out: str | Path) -> Path:
    """Histogram of clip durations, stacked per split, saved as a PNG."""
    from matplotlib.figure import Figure

    feature_store = FeatureStore(store)
    per_split = {
        split: feature_store.column("duration", split) for split in feature_store.manifest["splits"]
    }
    per_split = {split: durations for split, durations in per_split.items() if durations}
    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.subplots()
    if per_split:
        longest = max(max(durations) for durations in per_split.values())
        bins = np.linspace(0, max(1.0, np.ceil(longest)), 41)
        labels = [f"{split} ({len(d)} clips)" for split, d in per_split.items()]
        ax.hist(list(per_split.values()), bins=bins, stacked=True, label=labels)
        ax.legend()
    ax.set(xlabel="clip duration (s)", ylabel="clips", title=f"Clip durations: {Path(store).name}")
    fig.savefig(out, dpi=110)
    return Path(out)


def plot_log_mel(
    store: str | Path, out: str | Path, split: str | None = None, index: int = 0
) -> Path:
    """One stored clip's log-Mel window (as the model sees it: padded to 30 s), saved as a PNG."""
    from matplotlib.figure import Figure

    feature_store = FeatureStore(store)
    splits = [split] if split else [s for s, n in feature_store.manifest["splits"].items() if n]
    if not splits:
        raise ValueError(f"{store}: holds no rows to plot")
    item = feature_store.dataset(splits[0])[index]
    window = expand_log_mel(item["features"], item["pad_value"])
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(window, origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
    ax.axvline(item["features"].shape[1], color="white", lw=0.8, ls="--")
    ax.set(
        xlabel="frame (10 ms); dashed: end of the stored frames",
        ylabel="mel bin",
        title=f"{item['id']}: {item['text']}",
    )
    fig.colorbar(image, ax=ax, pad=0.01)
    fig.savefig(out, dpi=110)
    return Path(out)
