"""Long-form transcription speed: the app's default backend against faster-whisper, same weights.

A ~10-minute recording is made by joining the bundled sample clips (with short pauses between
them, like sentences in a talk). A Whisper of whisper-tiny's size (d_model 384, 4 encoder + 4
decoder layers, 6 heads; random weights, real multilingual tokenizer) is built offline and exported
to CTranslate2 with `export_ctranslate2` (float32: the same weights). Then, each in its own
subprocess so that peak memory is its own, on the same CPU with the same thread count, the same
language, greedy decoding and the SAME max_new_tokens per window:

  transformers      utils.transcription, backend "transformers", batched 30 s windows
  ctranslate2       utils.transcription on the CTranslate2 export (same windows and prompt): what
                    the app serves on a CPU by default (notebook 03 / --export-ct2)
  fw-batched        faster-whisper's own BatchedInferencePipeline over the same windows
  fw-sequential     faster-whisper's WhisperModel.transcribe (its classic long-form loop)
  transformers-seq  transformers' own long-form generate (sequential seek), on request

Random weights decode garbage, but the same garbage: the token counts printed show the decoding
work each run did (transformers and ctranslate2 produce identical tokens; the sequential loops
seek by timestamps, so theirs differ).

    python benchmarks/bench_inference.py [--minutes 10] [--max-new-tokens 96] [--threads 2]
                                         [--repeat 3] [--runs transformers,ctranslate2,...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from utils.audio import SAMPLE_RATE, load_audio  # noqa: E402
from utils.transcription import TranscribeOptions  # noqa: E402

# whisper-tiny's architecture: 39 M parameters, the size people run on a CPU.
TINY_ARCH = {"d_model": 384, "layers": 4, "heads": 6, "ffn_dim": 1536}
LANGUAGE = "sv"  # fixed, so no run spends time on language detection
RUNS = ("transformers", "ctranslate2", "fw-batched", "fw-sequential", "transformers-seq")
DEFAULT_RUNS = RUNS[:4]  # transformers-seq (transformers' own long-form loop) is slow: on request


def make_recording(corpus: Path, minutes: float, out: Path) -> float:
    """Join the sample clips (all locales, 0.3-0.8 s pauses) until `minutes`; write a 16 kHz wav."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    clips = [load_audio(p) for p in sorted(corpus.glob("*/clips/*.mp3"))]
    parts, total, target = [], 0, int(minutes * 60 * SAMPLE_RATE)
    while total < target:
        for clip in clips:
            pause = np.zeros(int(rng.uniform(0.3, 0.8) * SAMPLE_RATE), np.float32)
            parts += [clip, pause]
            total += len(clip) + len(pause)
            if total >= target:
                break
    audio = np.concatenate(parts)[:target]
    sf.write(out, audio, SAMPLE_RATE, subtype="FLOAT")
    return len(audio) / SAMPLE_RATE


def prepare(work: Path) -> tuple[Path, Path]:
    """Build the whisper-tiny-sized model and its float32 CTranslate2 export (reused if present)."""
    from utils.models.tiny_random import build_tiny_whisper
    from utils.transcription import export_ctranslate2

    model = build_tiny_whisper(work / "whisper-tiny-arch", **TINY_ARCH)
    ct2 = export_ctranslate2(model, work / "whisper-tiny-arch-ct2")
    return model, ct2


def run_one(
    kind: str, model: str, ct2: str, wav: str, max_new_tokens: int, threads: int, batch_size: int
) -> dict:
    """Transcribe `wav` once with `kind`; runs inside a fresh subprocess."""
    audio = load_audio(wav)
    started = time.perf_counter()
    if not kind.startswith("fw-"):
        from utils.transcription import TranscribeOptions, Transcriber

        opts = TranscribeOptions(
            language=LANGUAGE,
            backend="ctranslate2" if kind == "ctranslate2" else "transformers",
            strategy="sequential" if kind == "transformers-seq" else "batched",
            max_new_tokens=max_new_tokens,
            cpu_threads=threads,
            batch_size=batch_size,
        )
        transcriber = Transcriber(ct2 if kind == "ctranslate2" else model, opts)
        loaded = time.perf_counter()
        result = transcriber.transcribe(audio)
        segments = [(s.start, s.end, s.text) for s in result.segments]
        tokens = result.info["tokens"]
    else:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        from utils.transcription import plan_windows

        fw = WhisperModel(ct2, device="cpu", compute_type="default", cpu_threads=threads)
        loaded = time.perf_counter()
        # CTranslate2 decodes min(max_length / 2, max_length - prompt) tokens and faster-whisper
        # passes max_length = prompt + max_new_tokens, so asking 2N - prompt gives N tokens.
        prompt = 3  # <|startoftranscript|><|sv|><|transcribe|>
        common = dict(language=LANGUAGE, beam_size=1, temperature=0.0, vad_filter=False)
        common.update(max_new_tokens=2 * max_new_tokens - prompt, condition_on_previous_text=False)
        if kind == "fw-batched":
            clips = [
                {"start": s / SAMPLE_RATE, "end": e / SAMPLE_RATE} for s, e in plan_windows(audio)
            ]
            out, _ = BatchedInferencePipeline(fw).transcribe(
                audio, clip_timestamps=clips, batch_size=batch_size, **common
            )
        else:
            out, _ = fw.transcribe(audio, **common)
        out = list(out)  # segments are generated lazily: decoding happens here
        segments = [(s.start, s.end, s.text) for s in out]
        tokens = sum(len(s.tokens) for s in out)
    done = time.perf_counter()
    return {
        "kind": kind,
        "load_s": loaded - started,
        "transcribe_s": done - loaded,
        "segments": len(segments),
        "tokens": tokens,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure(kind: str, model: Path, ct2: Path, wav: Path, args) -> dict:
    """Run one measurement in a fresh subprocess (its own peak memory) and return its figures."""
    cmd = [sys.executable, __file__, "--_one", kind, "--_paths", str(model), str(ct2), str(wav)]
    cmd += ["--max-new-tokens", str(args.max_new_tokens), "--threads", str(args.threads)]
    cmd += ["--batch-size", str(args.batch_size)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{kind} failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def describe(kind: str, r: dict) -> str:
    tokens = r["tokens"] if r["tokens"] is not None else "-"
    return (
        f"{kind:16s} transcribe {r['transcribe_s']:7.2f} s  RTF {r['rtf']:.4f}  "
        f"load {r['load_s']:5.2f} s  peak RSS {r['peak_rss_mb']:6.0f} MB  "
        f"segments {r['segments']:4d}  tokens {tokens}"
    )


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--max-new-tokens", type=int, default=96, help="per 30 s window, all runs")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads, all runs")
    p.add_argument(
        "--batch-size",
        type=int,
        default=TranscribeOptions.batch_size,
        help="windows decoded together, all batched runs (default: the app's)",
    )
    p.add_argument(
        "--runs", default=",".join(DEFAULT_RUNS), help="comma-separated, of " + ",".join(RUNS)
    )
    p.add_argument(
        "--work", type=Path, default=None, help="keep model/recording here (default: tmp)"
    )
    p.add_argument("--repeat", type=int, default=1, help="interleaved rounds; the fastest counts")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--_one", help=argparse.SUPPRESS)
    p.add_argument("--_paths", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args._one:  # child process: one measurement, JSON on the last stdout line
        model, ct2, wav = args._paths
        r = run_one(args._one, model, ct2, wav, args.max_new_tokens, args.threads, args.batch_size)
        print(json.dumps(r))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model, ct2 = prepare(work)
        wav = work / "recording.wav"
        seconds = make_recording(REPO / "data" / "cv-corpus-sample", args.minutes, wav)
        print(
            f"recording: {seconds / 60:.1f} min; model: whisper-tiny architecture {TINY_ARCH}, "
            f"random weights; max_new_tokens={args.max_new_tokens}; threads={args.threads}; "
            f"batch_size={args.batch_size}; CPU cores: {os.cpu_count()}"
        )
        kinds = args.runs.split(",")
        results: dict[str, dict] = {}
        # Rounds interleave the runs (A B C D, A B C D, ...) so that a slow spell of a shared
        # machine does not land on one run only; each run's fastest round is reported.
        for round_ in range(args.repeat):
            for kind in kinds:
                r = measure(kind, model, ct2, wav, args)
                r["rtf"] = r["transcribe_s"] / seconds
                print(f"round {round_ + 1}  {describe(kind, r)}", flush=True)
                best = results.get(kind)
                r["rounds_s"] = (best["rounds_s"] if best else []) + [round(r["transcribe_s"], 2)]
                if best is None or r["transcribe_s"] < best["transcribe_s"]:
                    results[kind] = r
                else:
                    best["rounds_s"] = r["rounds_s"]
        if args.repeat > 1:
            print(f"fastest of {args.repeat} rounds:")
            for kind, r in results.items():
                print(f"         {describe(kind, r)}")
        for ours in ("transformers", "ctranslate2"):
            for ref in ("fw-batched", "fw-sequential"):
                if ours in results and ref in results:
                    a, b = results[ours], results[ref]
                    print(
                        f"{ours} / faster-whisper {ref[3:]}: {a['transcribe_s'] / b['transcribe_s']:.2f}x "
                        f"time, {a['peak_rss_mb'] / b['peak_rss_mb']:.2f}x peak memory"
                    )
        print("command: python benchmarks/bench_inference.py " + " ".join(sys.argv[1:]))
        if args.json:
            args.json.write_text(json.dumps({"seconds": seconds, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
