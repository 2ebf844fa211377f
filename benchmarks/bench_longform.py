"""Long-form transcription on real weights: time and WER of each strategy and backend of this
project against faster-whisper's batched and sequential pipelines, all on the same weights.

The model is OpenAI's Whisper tiny.en (real weights, rebuilt offline by utils.models.tiny_en) or
any checkpoint given with --model. The recording is stitched from the English sample corpus's
held-out sentences (test.tsv and dev.tsv: never trained on), shuffled, with 0.4-1.4 s pauses
between them, repeated until --minutes. Each run is a fresh subprocess (its own peak memory), on the
same CPU threads, greedy decoding with each library's temperature fallback (with --repeat N, N
runs each and the median time: a shared VM's timings vary by 10-20 % from run to run; with
--recordings N, N recordings shuffled differently, times summed and WER over all their words: one
recording's WER moves by +-2 points with where the model happens to skip or repeat a sentence):

  <backend>/<strategy>  utils.transcribe, backend transformers or ctranslate2 (the CTranslate2
                        export of the same weights, float32); strategy streams (the default),
                        sequential (Whisper's own seek loop) or windows (independent 30 s windows)
  fw-batched            faster-whisper BatchedInferencePipeline (its Silero VAD segments)
  fw-sequential         faster-whisper WhisperModel.transcribe (conditioned on previous text)

--finetune STEPS also fine-tunes the model on the English sample's train split for STEPS steps,
once with timestamp labels (timestamp_share 0.2, the default) and once without (0.0), and runs
the same table on both: what the timestamp labels keep of long-form ability.

    python benchmarks/bench_longform.py [--minutes 8] [--threads 2] [--finetune 100] [--repeat 3]
                                        [--recordings 5]
                                        [--runs ctranslate2/streams,fw-batched,...]
                                        [--options '{"batch_size": 16}']
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from utils.audio import SAMPLE_RATE, load_audio  # noqa: E402

ENGLISH = REPO / "data" / "cv-corpus-sample" / "en"
# never in the train split the --finetune runs learn from (unseen.tsv, whose rare words zero-shot
# tiny.en gets 77 % wrong, would drown the differences between strategies)
HELD_OUT = ("test", "dev")
PAUSES = (0.4, 1.4)  # seconds of silence between sentences, drawn uniformly
OURS = [
    f"{b}/{s}"
    for b in ("ctranslate2", "transformers")
    for s in ("streams", "sequential", "windows")
]
RUNS = (*OURS, "fw-batched", "fw-sequential")
DEFAULT = "ctranslate2/streams"  # what the app and the CLI use on a CPU


def make_recording(minutes: float, out: Path, seed: int = 0) -> tuple[float, str]:
    """Stitch the held-out sentences (shuffled by `seed`, with pauses) until `minutes`; write a
    16 kHz wav. Returns its length in seconds and the text said."""
    import soundfile as sf

    rows = []
    for split in HELD_OUT:
        with open(ENGLISH / f"{split}.tsv", encoding="utf-8", newline="") as f:
            rows += list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    rng = np.random.default_rng(seed)
    parts, texts, total, target = [], [], 0, int(minutes * 60 * SAMPLE_RATE)
    while total < target:
        for i in rng.permutation(len(rows)):
            clip = load_audio(ENGLISH / "clips" / rows[i]["path"])
            pause = np.zeros(int(rng.uniform(*PAUSES) * SAMPLE_RATE), np.float32)
            parts += [clip, pause]
            texts.append(rows[i]["sentence"])
            total += len(clip) + len(pause)
            if total >= target:
                break
    audio = np.concatenate(parts)
    sf.write(out, audio, SAMPLE_RATE, subtype="FLOAT")
    return len(audio) / SAMPLE_RATE, " ".join(texts)


def fine_tune(model: str, work: Path, steps: int, timestamp_share: float) -> Path:
    """Fine-tune `model` on the English sample's train split only (the demo's settings otherwise,
    `steps` steps)."""
    from utils.featurize import FeatureConfig, run_feature_pipeline
    from utils.train import TrainConfig, train

    store = work / "store-en"
    run_feature_pipeline(FeatureConfig(source=str(ENGLISH), model=model, store=str(store)))
    out = work / f"finetuned-{steps}-ts{timestamp_share:g}"
    cfg = TrainConfig(
        store=str(store),
        output_dir=str(out),
        train_splits=("train",),  # dev is in the recording: not trained on here
        max_steps=steps,
        batch_size=8,
        learning_rate=1e-5,
        warmup_steps=10,
        eval_steps=steps,
        save_steps=steps,
        freeze_encoder=True,
        generation_max_length=64,
        timestamp_share=timestamp_share,
        longform_eval_minutes=0,
        baseline=False,
        report_to=(),
    )
    train(cfg)
    return out


def run_one(kind: str, model: str, ct2: str, wav: str, threads: int, options: dict) -> dict:
    """Transcribe `wav` once with `kind`; runs inside a fresh subprocess."""
    audio = load_audio(wav)
    started = time.perf_counter()
    if not kind.startswith("fw-"):
        from utils.transcribe import TranscribeOptions, Transcriber

        backend, strategy = kind.split("/")
        opts = TranscribeOptions(language="en", strategy=strategy, cpu_threads=threads, **options)
        transcriber = Transcriber(ct2 if backend == "ctranslate2" else model, opts, backend=backend)
        loaded = time.perf_counter()
        result = transcriber.transcribe(audio)
        segments = [(s.start, s.end, s.text) for s in result.segments]
        windows = result.info["windows"]
    else:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        fw = WhisperModel(ct2, device="cpu", compute_type="default", cpu_threads=threads)
        loaded = time.perf_counter()
        if kind == "fw-batched":
            out, _ = BatchedInferencePipeline(fw).transcribe(audio, language="en", beam_size=1)
        else:
            out, _ = fw.transcribe(audio, language="en", beam_size=1)
        segments = [(s.start, s.end, s.text) for s in out]  # decoding happens here (lazy)
        windows = None  # faster-whisper does not say
    done = time.perf_counter()
    return {
        "kind": kind,
        "load_s": loaded - started,
        "transcribe_s": done - loaded,
        "text": " ".join(text.strip() for _, _, text in segments),
        "windows": windows,
        "longest_gap_s": max((b[0] - a[1] for a, b in pairwise(segments)), default=0.0),
        # VmHWM, not getrusage: at exec the kernel carries the parent's peak into RUSAGE_SELF
        "peak_rss_mb": int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0])
        / 1024,
    }


def measure(kind: str, model: Path, ct2: Path, wav: Path, args) -> dict:
    """Run one measurement in a fresh subprocess (its own peak memory) and return its figures."""
    cmd = [sys.executable, __file__, "--_one", kind, "--_paths", str(model), str(ct2), str(wav)]
    cmd += ["--threads", str(args.threads), "--options", args.options]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{kind} failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(name: str, model: Path, recordings: list[tuple[Path, str]], kinds: list[str], args):
    """Every run of `kinds` on one model over every recording (times summed, WER over all their
    words); prints a row each and the default's ratios."""
    from utils.train.metrics import text_metrics
    from utils.transcribe import export_ctranslate2

    work = recordings[0][0].parent
    ct2 = export_ctranslate2(model, work / f"ct2-{len(os.listdir(work))}")
    print(
        f"\n## {name}\n| run | seconds | WER % | longest gap s | windows | peak RSS MB |\n"
        "|---|---:|---:|---:|---:|---:|"
    )
    results = {}
    for kind in kinds:
        per_recording = []
        for wav, _ in recordings:
            runs = [measure(kind, model, ct2, wav, args) for _ in range(args.repeat)]
            runs[0]["transcribe_s"] = float(np.median([run["transcribe_s"] for run in runs]))
            per_recording.append(runs[0])  # greedy decoding: every run gives the same text
        r = {
            "kind": kind,
            "transcribe_s": sum(x["transcribe_s"] for x in per_recording),
            "wer": text_metrics(
                [x["text"] for x in per_recording], [said for _, said in recordings]
            )["wer_normalized"],  # percent
            "longest_gap_s": max(x["longest_gap_s"] for x in per_recording),
            "windows": sum(x["windows"] or 0 for x in per_recording) or None,
            "peak_rss_mb": max(x["peak_rss_mb"] for x in per_recording),
        }
        results[kind] = r
        print(
            f"| {kind} | {r['transcribe_s']:.1f} | {r['wer']:.1f} | {r['longest_gap_s']:.1f} "
            f"| {r['windows'] or ''} | {r['peak_rss_mb']:.0f} |",
            flush=True,
        )
    if DEFAULT in results and "fw-batched" in results and "fw-sequential" in results:
        ours, batched, seq = results[DEFAULT], results["fw-batched"], results["fw-sequential"]
        print(
            f"{DEFAULT}: {ours['transcribe_s'] / batched['transcribe_s']:.2f}x faster-whisper "
            f"batched's time (target <= 1); WER {ours['wer']:.1f} % against faster-whisper "
            f"sequential's {seq['wer']:.1f} % (target: no worse)"
        )
    return results


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default=None, help="checkpoint folder (default: real tiny.en)")
    p.add_argument("--minutes", type=float, default=8.0, help="length of the recording")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads, all runs")
    p.add_argument("--runs", default=",".join(RUNS), help="comma-separated, of " + ",".join(RUNS))
    p.add_argument(
        "--recordings",
        type=int,
        default=1,
        help="recordings of --minutes each (sentences shuffled differently); totals reported",
    )
    p.add_argument(
        "--repeat", type=int, default=1, help="runs of each kind; the median time is reported"
    )
    p.add_argument("--finetune", type=int, default=0, help="also fine-tune this many steps")
    p.add_argument("--work", type=Path, default=None, help="keep models/recording here")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument(
        "--options",
        default="{}",
        help="this project's TranscribeOptions, JSON: '{\"batch_size\": 16}'",
    )
    p.add_argument("--_one", help=argparse.SUPPRESS)
    p.add_argument("--_paths", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args._one:  # child process: one measurement, JSON on the last stdout line
        print(json.dumps(run_one(args._one, *args._paths, args.threads, json.loads(args.options))))
        return 0

    from utils.models.tiny_en import tiny_en_checkpoint

    kinds = [k for k in args.runs.split(",") if k]
    if unknown := set(kinds) - set(RUNS):
        raise SystemExit(f"--runs: unknown {sorted(unknown)}; choose from {', '.join(RUNS)}")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model = Path(args.model or tiny_en_checkpoint()).resolve()
        recordings, seconds = [], 0.0
        for seed in range(args.recordings):
            wav = work / f"recording-{seed}.wav"
            length, said = make_recording(args.minutes, wav, seed)
            recordings.append((wav, said))
            seconds += length
        print(
            f"{len(recordings)} recording(s), {seconds / 60:.1f} min of held-out English "
            f"sentences; model {model}; threads {args.threads}; CPU cores {os.cpu_count()}"
        )
        models = {"zero-shot": model}
        if args.finetune:
            for share in (0.2, 0.0):
                label = f"fine-tuned {args.finetune} steps, timestamp_share {share}"
                models[label] = fine_tune(str(model), work, args.finetune, share)
        results = {name: table(name, m, recordings, kinds, args) for name, m in models.items()}
        print("\ncommand: python benchmarks/bench_longform.py " + " ".join(sys.argv[1:]))
        if args.json:
            args.json.write_text(json.dumps({"seconds": seconds, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
