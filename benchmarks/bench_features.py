"""Feature extraction: the Hugging Face "Fine-Tune Whisper" blog recipe against this pipeline.

    python benchmarks/bench_features.py [--clips 864] [--model DIR] [--workers N]

Both recipes process the same clips (the bundled sample corpus, its list repeated to --clips
clips) on this machine, one after the other, timed from loading the processor to a finished store:

- reference: per example `librosa.load(path, sr=16000)` + `WhisperFeatureExtractor` + tokenizer
  through `datasets.Dataset.map` (num_proc = all cores, the blog's best case), then `save_to_disk`;
- pipeline: `run_feature_pipeline` (process pool on all cores, compact float16 parquet shards);
- augmented: the same pipeline with augmentation on (`augment="on"`: the defaults, one copy per
  clip, each technique at p=0.5), measured in output clips/s (originals + augmented copies).

Prints clips/s and stored bytes/clip of both, the ratios, and the largest difference between the
reference's padded features and the store's rebuilt ones (within float16 rounding: < 2e-3); then
the augmented run's output clips/s against plain extraction's (issue 5: within 2x per output clip).
Also prints the training data path's speed (store read + padding into [16, n_mels, 3000] batches).
The model defaults to the tiny offline Whisper: its feature extractor (80 mel bins) and tokenizer
are whisper-small's, the only parts used here.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local

from benchmarks.machine import machine  # noqa: E402
from utils.features import expand_log_mel  # noqa: E402
from utils.featurize import FeatureConfig, run_feature_pipeline  # noqa: E402
from utils.store import FeatureStore, directory_bytes, pad_batch  # noqa: E402

TARGET_SPEEDUP = 5.0  # issue 2: at least 5x the reference's clips/s on the 2-core machine
TARGET_BYTES_RATIO = 12.0  # and at most 1/12 of its bytes per clip
TOLERANCE = 2e-3  # float16 rounding of log-Mel values
TARGET_AUGMENT_COST = 2.0  # issue 5: augmentation within 2x of plain extraction per output clip
AUGMENT = "on"  # the augmentation defaults: noise, pitch, speed at p=0.5 each, one copy per clip
LOCALES = ("sv-SE", "it", "en")


def machine_line() -> str:
    return machine(f", Python {platform.python_version()}")


def clip_list(n: int) -> list[tuple[str, str]]:
    """(mp3 path, transcript) of the sample corpus' train/dev/test clips, repeated to n clips."""
    clips = []
    for locale in LOCALES:
        folder = REPO / "data" / "cv-corpus-sample" / locale
        for split in ("train", "dev", "test"):
            with open(folder / f"{split}.tsv", encoding="utf-8", newline="") as f:
                for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                    clips.append((str(folder / "clips" / row["path"]), row["sentence"]))
    return [clips[i % len(clips)] for i in range(n)]


def write_manifest(clips: list[tuple[str, str]], path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "path", "sentence", "split"])
        for i, (audio, text) in enumerate(clips):
            writer.writerow([f"{i:06d}", audio, text, "train"])
    return path


def run_reference(clips, model: str, out: Path, num_proc: int) -> float:
    """The blog's recipe; returns wall seconds."""
    import datasets
    import librosa
    from transformers import WhisperFeatureExtractor, WhisperTokenizer

    datasets.disable_progress_bars()
    start = time.perf_counter()
    feature_extractor = WhisperFeatureExtractor.from_pretrained(model)
    tokenizer = WhisperTokenizer.from_pretrained(model, language="swedish", task="transcribe")

    def prepare_dataset(batch):
        audio, sr = librosa.load(batch["path"], sr=16000)
        batch["input_features"] = feature_extractor(audio, sampling_rate=sr).input_features[0]
        batch["labels"] = tokenizer(batch["sentence"]).input_ids
        return batch

    ds = datasets.Dataset.from_dict(
        {
            "id": [f"{i:06d}" for i in range(len(clips))],
            "path": [c[0] for c in clips],
            "sentence": [c[1] for c in clips],
        }
    )
    ds = ds.map(prepare_dataset, remove_columns=["path", "sentence"], num_proc=num_proc)
    ds.save_to_disk(str(out))
    return time.perf_counter() - start


def run_pipeline(
    manifest: Path, model: str, store: Path, workers: int | None, augment=None
) -> float:
    """This pipeline; returns wall seconds (imports done before the clock starts, as above)."""
    from transformers import WhisperFeatureExtractor, WhisperTokenizer  # noqa: F401

    start = time.perf_counter()
    cfg = FeatureConfig(
        source=str(manifest),
        store=str(store),
        model=model,
        language="swedish",
        workers=workers,
        augment=augment,
    )
    run_feature_pipeline(cfg)
    return time.perf_counter() - start


def max_feature_difference(reference_dir: Path, store: Path, n: int) -> float:
    """Largest |reference - rebuilt| over the first n clips (ids match row for row)."""
    import datasets

    reference = datasets.load_from_disk(str(reference_dir)).select(range(n)).with_format("numpy")
    ds = FeatureStore(store).dataset("train")
    worst = 0.0
    for i in range(n):
        item = ds[i]
        assert item["id"] == reference[i]["id"]
        rebuilt = expand_log_mel(item["features"], item["pad_value"])
        worst = max(
            worst, float(np.abs(rebuilt - np.asarray(reference[i]["input_features"])).max())
        )
    return worst


def data_path_speed(store: Path, batch: int = 16, epochs: int = 3) -> float:
    ds = FeatureStore(store).dataset("train")
    order = ds.grouped_order(0)
    start = time.perf_counter()
    for _ in range(epochs):
        for b in range(0, len(order), batch):
            pad_batch([ds[i] for i in order[b : b + batch]])
    return epochs * len(order) / (time.perf_counter() - start)


def run_recipe(recipe: str, model: str, work: Path, workers: int) -> float:
    """Run one recipe in a fresh Python process and return its wall seconds.

    A fresh process per recipe: nothing run before it (building the tiny model, the other recipe)
    can slow it down or, worse, leave torch's OpenMP pool in a state that deadlocks the workers
    `datasets.map(num_proc=...)` forks.
    """
    cmd = [sys.executable, __file__, "--run", recipe, "--model", model, "--keep", str(work)]
    cmd += ["--workers", str(workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{recipe} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads((work / f"{recipe}.json").read_text())["seconds"]


def child(recipe: str, model: str, work: Path, workers: int) -> int:
    clips = [tuple(row) for row in json.loads((work / "clips.json").read_text())]
    if recipe == "reference":
        seconds = run_reference(clips, model, work / "reference", num_proc=workers)
    elif recipe == "augmented":
        store = work / "store-augmented"
        seconds = run_pipeline(work / "clips.csv", model, store, workers=workers, augment=AUGMENT)
    else:
        seconds = run_pipeline(work / "clips.csv", model, work / "store", workers=workers)
    (work / f"{recipe}.json").write_text(json.dumps({"seconds": seconds}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--clips", type=int, default=864, help="clips to process (sample list repeated)"
    )
    parser.add_argument("--model", help="Whisper dir or hub id (default: tiny offline Whisper)")
    parser.add_argument(
        "--workers", type=int, help="pipeline workers and reference num_proc (default: all cores)"
    )
    parser.add_argument("--keep", help="keep the outputs in this folder instead of a temp dir")
    parser.add_argument(
        "--run", choices=["reference", "pipeline", "augmented"], help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    cores = args.workers or os.cpu_count() or 1
    if args.run:
        return child(args.run, args.model, Path(args.keep), cores)
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine: {machine_line()}")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-features-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        model = args.model
        if model is None:
            from utils.tiny_whisper import build_tiny_whisper

            model = str(build_tiny_whisper(work / "tiny-whisper"))
        clips = clip_list(args.clips)
        (work / "clips.json").write_text(json.dumps(clips))
        write_manifest(clips, work / "clips.csv")
        ref_dir, store, augmented = work / "reference", work / "store", work / "store-augmented"
        for folder in (ref_dir, store, augmented):
            shutil.rmtree(folder, ignore_errors=True)

        ref_seconds = run_recipe("reference", model, work, cores)
        ours_seconds = run_recipe("pipeline", model, work, cores)
        aug_seconds = run_recipe("augmented", model, work, cores)
        ref_bytes, ours_bytes = directory_bytes(ref_dir), directory_bytes(store)
        rows = FeatureStore(store).manifest["splits"]["train"]
        assert rows == len(clips), f"the store holds {rows} of {len(clips)} clips"

        n = len(clips)
        ref_rate, ours_rate = n / ref_seconds, n / ours_seconds
        ref_per, ours_per = ref_bytes / n, ours_bytes / n
        checked = min(n, 108)
        diff = max_feature_difference(ref_dir, store, checked)
        read_rate = data_path_speed(store)
        mean = float(np.mean(FeatureStore(store).column("duration")))
        distinct = len({c[0] for c in clips})
        print(
            f"clips: {n} ({distinct} distinct sample clips, mean {mean:.2f} s); workers = num_proc = {cores}"
        )
        print(f"{'recipe':<30}{'seconds':>9}{'clips/s':>10}{'bytes/clip':>13}")
        print(
            f"{'reference (blog: map + save)':<30}{ref_seconds:>9.1f}{ref_rate:>10.1f}{ref_per:>13,.0f}"
        )
        print(f"{'this pipeline':<30}{ours_seconds:>9.1f}{ours_rate:>10.1f}{ours_per:>13,.0f}")
        speedup, shrink = ours_rate / ref_rate, ref_per / ours_per
        print(f"speed: {speedup:.1f}x the reference's clips/s (target >= {TARGET_SPEEDUP:g}x)")
        print(
            f"size: 1/{shrink:.1f} of the reference's bytes per clip (target <= 1/{TARGET_BYTES_RATIO:g})"
        )
        print(
            f"features: max |reference - store| = {diff:.2e} over {checked} clips (limit {TOLERANCE:g})"
        )
        print(f"data path (store read + pad to [16, n_mels, 3000]): {read_rate:,.0f} samples/s")

        outputs = FeatureStore(augmented).manifest["splits"]["train"]
        aug_rate = outputs / aug_seconds
        cost = ours_rate / aug_rate
        print(
            f"augmentation ({AUGMENT!r}: defaults, 1 copy per clip): {n} clips -> {outputs} output "
            f"clips ({outputs - n} augmented copies) in {aug_seconds:.1f} s = {aug_rate:.1f} output "
            f"clips/s, against {ours_rate:.1f} clips/s plain"
        )
        print(
            f"augmentation cost: {cost:.2f}x plain extraction's time per output clip "
            f"(target <= {TARGET_AUGMENT_COST:g}x)"
        )
        ok = speedup >= TARGET_SPEEDUP and shrink >= TARGET_BYTES_RATIO and diff < TOLERANCE
        ok = ok and cost <= TARGET_AUGMENT_COST
        print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print("targets met" if ok else "TARGETS NOT MET")
        return 0 if diff < TOLERANCE else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
