"""Transcribe or translate audio of any length with a Whisper checkpoint, and write subtitles.

`Transcriber(model, options)` works over any Whisper checkpoint (a Hub id or a local directory) with
one of two backends:

- "transformers": the checkpoint itself, through `WhisperForConditionalGeneration.generate`;
- "ctranslate2": a CTranslate2 export of it (`export_ctranslate2`) run by faster-whisper.

"auto" (the default) takes the CTranslate2 export when there is one (`<model>/ctranslate2/`, where
`export_ctranslate2` writes by default, a cache folder for a Hub id, or the model directory is an
export itself) and the checkpoint otherwise. On a CPU the CTranslate2 engine is the faster one
(benchmarks/bench_inference.py); on a GPU both run in float16.

Long-form audio is cut into windows of at most 30 seconds (Whisper's input size) at the quietest
point of each window's last 6 seconds, so that cuts fall in pauses rather than inside words. The
"batched" strategy (default) decodes the windows independently, several at a time, which is what
makes a CPU fast; the "sequential" strategy is Whisper's own long-form algorithm (each window starts
where the previous one's last complete segment ended, as transformers' long-form `generate` and
faster-whisper's `WhisperModel.transcribe` do), slower but able to recover a word cut at a window
edge. Windows that hold only silence are skipped, so silence is never "transcribed" into
hallucinated text. Segment timestamps come from Whisper's timestamp tokens, shifted by the window's
offset and made monotonic, so SRT/VTT files are always valid.

CLI: python -m utils.transcription FILES... --model DIR [--language sv] [--task translate] [--srt]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .audio import SAMPLE_RATE, AudioError, load_audio

WINDOW_SECONDS = 30.0  # Whisper sees 30 s of audio at a time
# Cut each long window at the quietest 20 ms frame of its last 6 s: long enough to contain a pause
# between sentences in ordinary speech, short enough that windows stay 80-100 % full.
CUT_SEARCH_SECONDS = 6.0
ENERGY_FRAME = SAMPLE_RATE // 50  # 20 ms frames for the energy used to place cuts and find silence
# A window whose loudest 20 ms frame is below -55 dBFS holds no speech worth decoding: a recording
# of a quiet room sits around -60 to -70 dBFS, whispered speech close to a phone above -45 dBFS.
SILENCE_DBFS = -55.0
TIME_PRECISION = 0.02  # seconds per Whisper timestamp token (<|0.00|>, <|0.02|>, ...)
# Whisper decodes at most 224 tokens per window: half its 448 decoder positions (OpenAI's
# sample_len = n_text_ctx // 2; CTranslate2 applies the same cap).
MAX_NEW_TOKENS = 224
MIN_SEGMENT_SECONDS = 0.02  # one timestamp step: the shortest cue a subtitle file gets
CT2_SUBDIR = "ctranslate2"  # where export_ctranslate2 puts an export next to its checkpoint
BACKENDS = ("auto", "transformers", "ctranslate2")
STRATEGIES = ("batched", "sequential")
TASKS = ("transcribe", "translate")


class NoSpeechError(AudioError):
    """The audio holds only silence (or is too short to hold speech); the message names the file."""


@dataclass(frozen=True)
class TranscribeOptions:
    """How a Transcriber loads its model and decodes; every field can be left at its default."""

    # Spoken language as a code ("sv"), a name ("swedish") or a token ("<|sv|>"); None detects it
    # once, from the first window that holds sound, and uses it for the whole recording.
    language: str | None = None
    # "transcribe" keeps the spoken language; "translate" outputs English.
    task: str = "transcribe"
    # Segment timestamps from Whisper's timestamp tokens. Off, each window is one segment.
    timestamps: bool = True
    # "auto" (a CTranslate2 export next to the model when there is one), "transformers" or
    # "ctranslate2" (exported on first use into the model dir, or a cache dir for Hub ids).
    backend: str = "auto"
    # "batched": independent windows decoded `batch_size` at a time (fast); "sequential":
    # Whisper's seek-based long-form algorithm, one window after another.
    strategy: str = "batched"
    # "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    # CTranslate2 compute type: "default" keeps the export's weights on CPU and uses float16 on a
    # GPU (as the transformers backend does); or "int8", "int8_float16", "float32"...
    compute_type: str = "default"
    # Refuse audio longer than this many seconds (None: no limit); the app keeps requests bounded.
    max_duration: float | None = 4 * 3600.0
    # Tokens decoded per window at most. Whisper's own limit is 224 (half the decoder's 448
    # positions: OpenAI's sample_len, which CTranslate2 also enforces); 30 s of fast speech with
    # timestamps needs about 150.
    max_new_tokens: int = MAX_NEW_TOKENS
    # Windows decoded together by the "batched" strategy: more is faster until memory runs out.
    batch_size: int = 8
    # Beam size; 1 is greedy decoding (fastest, and what transformers' Whisper config defaults to).
    num_beams: int = 1
    # CPU threads for either backend; 0 uses every core.
    cpu_threads: int = 0

    def __post_init__(self):
        checks = {
            "task": self.task in TASKS,
            "backend": self.backend in BACKENDS,
            "strategy": self.strategy in STRATEGIES,
            "batch_size": self.batch_size >= 1,
            "num_beams": self.num_beams >= 1,
            "cpu_threads": self.cpu_threads >= 0,
            "max_duration": self.max_duration is None or self.max_duration > 0,
            "max_new_tokens": 1 <= self.max_new_tokens <= MAX_NEW_TOKENS,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"TranscribeOptions.{name}={getattr(self, name)!r} is not valid")
        normalize_language(self.language)  # raises on an unknown language


class Segment(NamedTuple):
    """One stretch of speech: start and end in seconds from the start of the audio, and its text."""

    start: float
    end: float
    text: str


@dataclass
class Transcript:
    """What a Transcriber returns for one recording."""

    text: str  # the whole transcript, segments joined with spaces
    segments: list[Segment]  # in time order, start_i <= end_i <= start_{i+1}
    language: str | None  # the language code used (given or detected)
    duration: float = 0.0  # seconds of audio
    task: str = "transcribe"
    info: dict = field(default_factory=dict)  # backend, strategy, windows, seconds taken


# --------------------------------------------------------------------------------------------
# Languages


def normalize_language(language: str | None) -> str | None:
    """Return Whisper's code for a language given as code, name or token; None/"auto" -> None."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    if language is None:
        return None
    key = str(language).strip().lower()
    if key in ("", "auto", "detect", "none"):
        return None
    key = key.removeprefix("<|").removesuffix("|>")
    if key in LANGUAGES:
        return key
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    raise ValueError(
        f"language={language!r} is not a Whisper language: use a code such as 'sv' or a name such "
        "as 'swedish', or None to detect it"
    )


def language_choices(codes=None) -> list[tuple[str, str]]:
    """(label, code) pairs for a UI dropdown, sorted by name: the given codes (a model's
    languages) or every Whisper language."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    codes = LANGUAGES if codes is None else codes
    return sorted((f"{LANGUAGES.get(c, c).title()} ({c})", c) for c in codes)


# --------------------------------------------------------------------------------------------
# Windows


def frame_energy_db(audio: np.ndarray) -> np.ndarray:
    """RMS level in dBFS of consecutive 20 ms frames (the last partial frame included)."""
    n = len(audio)
    pad = (-n) % ENERGY_FRAME
    frames = np.pad(audio, (0, pad)).reshape(-1, ENERGY_FRAME)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-10))


def plan_windows(audio: np.ndarray) -> list[tuple[int, int]]:
    """Split audio into consecutive (start, end) sample ranges of at most 30 s, cutting long
    stretches at the quietest frame of each window's last CUT_SEARCH_SECONDS."""
    win = int(WINDOW_SECONDS * SAMPLE_RATE)
    search = int(CUT_SEARCH_SECONDS * SAMPLE_RATE) // ENERGY_FRAME
    energy = frame_energy_db(audio)
    windows, start = [], 0
    while len(audio) - start > win:
        last_frame = (start + win) // ENERGY_FRAME  # first frame not fully inside the window
        first_frame = last_frame - search
        # the latest of the quietest frames: keeps windows as full as possible
        span = energy[first_frame:last_frame]
        quietest = last_frame - 1 - int(np.argmin(span[::-1]))
        cut = quietest * ENERGY_FRAME + ENERGY_FRAME // 2
        windows.append((start, cut))
        start = cut
    windows.append((start, len(audio)))
    return windows


def is_silent(audio: np.ndarray) -> bool:
    """True when no 20 ms frame of the audio reaches SILENCE_DBFS."""
    return audio.size == 0 or float(frame_energy_db(audio).max()) < SILENCE_DBFS


# --------------------------------------------------------------------------------------------
# Segments from Whisper tokens


def clean_segments(
    raw: list[tuple[float, float, str]], duration: float | None = None
) -> list[Segment]:
    """Drop empty texts and make times monotonic within the audio: start_i < end_i <= start_{i+1}
    <= duration. Text that would start after the audio's end joins the previous segment.

    A fine-tuned model nearly always emits ordered timestamps already; this guards subtitle files
    against the odd misprediction (and against random-weight test models).
    """
    limit = float("inf") if duration is None else duration
    out: list[Segment] = []
    prev_end = 0.0
    for start, end, text in raw:
        text = " ".join(text.split())
        if not text:
            continue
        start = min(max(float(start), prev_end), limit)
        end = min(max(float(end), start + MIN_SEGMENT_SECONDS), limit)
        if end - start < MIN_SEGMENT_SECONDS / 2:  # no time left at the end of the audio
            if out:
                out[-1] = out[-1]._replace(text=f"{out[-1].text} {text}")
                continue
            start = max(0.0, end - MIN_SEGMENT_SECONDS)
        out.append(Segment(round(start, 3), round(end, 3), text))
        prev_end = out[-1].end
    return out


def segments_from_tokens(
    tokens, decode, timestamp_begin: int, eot: int, offset: float, window_seconds: float
) -> list[tuple[float, float, str]]:
    """Split one window's generated tokens at its timestamp tokens into (start, end, text) with
    times shifted by the window's offset. Text after the last timestamp (a window whose decoding
    stopped early) ends at the window's end; special tokens (prefix, end of text) are dropped."""
    segments, text_ids, start = [], [], None

    def flush(end: float):
        if text_ids:
            text = decode(text_ids)
            segments.append((offset + (start or 0.0), offset + end, text))
        text_ids.clear()

    for tok in (int(t) for t in tokens):
        if tok >= timestamp_begin:
            t = min((tok - timestamp_begin) * TIME_PRECISION, window_seconds)
            if start is None:
                start = t
            else:
                flush(t)
                start = None
        elif tok < eot:
            if start is None and not text_ids:
                start = segments[-1][1] - offset if segments else 0.0
            text_ids.append(tok)
    flush(window_seconds)
    return segments


# --------------------------------------------------------------------------------------------
# Backends


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; anything else unchanged."""
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # the CTranslate2 backend runs without torch
        return "cpu"


def is_ct2_export(path: str | Path) -> bool:
    """True when path is a directory holding a CTranslate2 model (model.bin + config.json)."""
    path = Path(path)
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def find_ct2_export(model: str | Path) -> Path | None:
    """The CTranslate2 export of a checkpoint, if one exists: the directory itself, its
    ctranslate2/ subdirectory, or (for a Hub id) the export cached by export_ctranslate2."""
    candidates = [Path(model), Path(model) / CT2_SUBDIR]
    if not Path(model).exists():
        candidates.append(ct2_cache_dir(str(model)))
    for candidate in candidates:
        if is_ct2_export(candidate):
            return candidate
    return None


def default_ct2_dir(model: str | Path) -> Path:
    """Where export_ctranslate2 writes by default: <model>/ctranslate2 for a local checkpoint,
    a cache folder for a Hub id."""
    return Path(model) / CT2_SUBDIR if Path(model).is_dir() else ct2_cache_dir(str(model))


def ct2_cache_dir(model: str) -> Path:
    """Where a Hub checkpoint's CTranslate2 export is cached (the Hub cache is read-only to us)."""
    root = Path(os.environ.get("WHISPER_CT2_CACHE", Path.home() / ".cache" / "whisper-ct2"))
    return root / model.replace("/", "--")


class _GenerateNoise(logging.Filter):
    """Drops transformers' per-call generate warnings that are expected here and would otherwise
    print on every request: max_new_tokens set on top of the config's max_length (that is the
    point of the option), and the notes on the generation config and attention mask (windows are
    always full 30 s inputs, so there is no padding to mask)."""

    NOISE = (
        "Both `max_new_tokens`",
        "together with generation-related arguments",
        "The attention mask is not set",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(n in message for n in self.NOISE)


def _quiet_generate_warnings():
    from transformers.utils import logging as hf_logging

    for handler in hf_logging._get_library_root_logger().handlers:
        if not any(isinstance(f, _GenerateNoise) for f in handler.filters):
            handler.addFilter(_GenerateNoise())


class TransformersBackend:
    """Whisper through transformers' `generate`; language and task go in as generate kwargs."""

    name = "transformers"

    def __init__(self, model: str | Path, options: TranscribeOptions):
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        _quiet_generate_warnings()
        self.torch = torch
        self.device = resolve_device(options.device)
        if options.cpu_threads:
            torch.set_num_threads(options.cpu_threads)
        self.dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        self.processor = WhisperProcessor.from_pretrained(str(model))
        self.model = WhisperForConditionalGeneration.from_pretrained(str(model), dtype=self.dtype)
        self.model.to(self.device).eval()
        gen = self.model.generation_config
        self.lang_to_id = dict(getattr(gen, "lang_to_id", None) or {})
        self.id_to_lang = {v: k[2:-2] for k, v in self.lang_to_id.items()}
        self.eot = self.processor.tokenizer.eos_token_id
        self.timestamp_begin = (
            self.processor.tokenizer.convert_tokens_to_ids("<|notimestamps|>") + 1
        )

    def check_language(self, language: str | None):
        if language and self.lang_to_id and f"<|{language}|>" not in self.lang_to_id:
            raise ValueError(f"language={language!r}: this model has no <|{language}|> token")

    def languages(self) -> list[str]:
        """Language codes this checkpoint knows (["en"] for an English-only one)."""
        return sorted(self.id_to_lang.values()) or ["en"]

    def decode(self, ids: list[int]) -> str:
        return self.processor.tokenizer.decode(ids, skip_special_tokens=True)

    def features(self, chunks: list[np.ndarray]):
        """[B, n_mels, 3000] log-Mel windows, each chunk zero-padded to 30 s as in training."""
        feats = self.processor.feature_extractor(
            chunks, sampling_rate=SAMPLE_RATE, return_tensors="pt"
        )
        return feats.input_features.to(self.device, self.dtype)

    def detect_language(self, chunk: np.ndarray) -> str:
        if not self.lang_to_id:  # English-only checkpoint
            return "en"
        with self.torch.inference_mode():
            ids = self.model.detect_language(self.features([chunk]))
        return self.id_to_lang[int(ids.reshape(-1)[0])]

    def generate_kwargs(self, opts: TranscribeOptions, language: str | None) -> dict:
        kwargs = {
            "return_timestamps": opts.timestamps,
            "num_beams": opts.num_beams,
            "max_new_tokens": opts.max_new_tokens,
        }
        if self.lang_to_id:  # English-only checkpoints take neither language nor task
            kwargs.update(language=language, task=opts.task)
        return kwargs

    def generate(self, chunks: list[np.ndarray], opts, language) -> list[list[int]]:
        """Token ids for independent windows (≤ 30 s each), decoded as one batch."""
        with self.torch.inference_mode():
            out = self.model.generate(
                self.features(chunks),
                # One generate call per window: without it transformers re-decodes a window whose
                # timestamps stop short of its end, which is long-form seeking, not wanted here.
                force_unique_generate_call=True,
                **self.generate_kwargs(opts, language),
            )
        return out.tolist()

    def sequential(self, audio: np.ndarray, opts, language) -> list[tuple[float, float, str]]:
        """Whisper's long-form algorithm as transformers implements it (return_segments)."""
        fe = self.processor.feature_extractor
        if len(audio) >= int(WINDOW_SECONDS * SAMPLE_RATE):
            feats = fe(
                audio,
                sampling_rate=SAMPLE_RATE,
                return_tensors="pt",
                truncation=False,
                padding="longest",
                return_attention_mask=True,
            )
        else:
            feats = fe(
                audio, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True
            )
        kwargs = self.generate_kwargs(opts, language)
        kwargs["return_timestamps"] = True  # long-form generate needs timestamps to seek
        with self.torch.inference_mode():
            out = self.model.generate(
                feats.input_features.to(self.device, self.dtype),
                attention_mask=feats.attention_mask.to(self.device),
                return_segments=True,
                **kwargs,
            )
        if not isinstance(out, dict):  # a single window: plain token ids
            tokens = out[0].tolist()
            self.sequential_tokens = sum(t < self.eot or t >= self.timestamp_begin for t in tokens)
            return segments_from_tokens(
                tokens, self.decode, self.timestamp_begin, self.eot, 0.0, len(audio) / SAMPLE_RATE
            )
        raw, self.sequential_tokens = [], 0
        for seg in out["segments"][0]:
            tokens = seg["tokens"].tolist()
            self.sequential_tokens += sum(t < self.eot or t >= self.timestamp_begin for t in tokens)
            text = self.decode([t for t in tokens if t < self.eot])
            raw.append((float(seg["start"]), float(seg["end"]), text))
        return raw


class CTranslate2Backend:
    """Whisper on a CTranslate2 export, loaded by faster-whisper.

    The batched strategy calls CTranslate2's `generate` on the same windows, features and prompt
    as the transformers backend (faster-whisper's own batched pipeline pads features with zeros
    instead of the log-Mel of silence the model was trained on); the sequential strategy is
    faster-whisper's `transcribe`.
    """

    name = "ctranslate2"

    def __init__(self, model: str | Path, options: TranscribeOptions):
        from faster_whisper import WhisperModel

        # No export yet: convert once (next to a local checkpoint, in a cache for a Hub id).
        export = find_ct2_export(model) or export_ctranslate2(model)
        self.export = export
        device, index = options.device, 0
        if device == "auto":  # asked of CTranslate2, not torch: this backend never imports torch
            import ctranslate2

            device = "cuda" if ctranslate2.get_cuda_device_count() else "cpu"
        if ":" in device:
            device, index = device.split(":")[0], int(device.split(":")[1])
        compute_type = options.compute_type
        if compute_type == "default" and device == "cuda":
            compute_type = "float16"  # as the transformers backend runs on a GPU
        self.whisper = WhisperModel(
            str(export),
            device=device,
            device_index=index,
            compute_type=compute_type,
            cpu_threads=options.cpu_threads or os.cpu_count() or 1,
            local_files_only=True,
        )
        self.ct2 = self.whisper.model
        self.tokenizer = self.whisper.hf_tokenizer
        self.token_id = self.tokenizer.token_to_id
        self.eot = self.token_id("<|endoftext|>")
        self.timestamp_begin = self.token_id("<|notimestamps|>") + 1
        self.multilingual = self.ct2.is_multilingual

    def check_language(self, language: str | None):
        if language and self.multilingual and self.token_id(f"<|{language}|>") is None:
            raise ValueError(f"language={language!r}: this model has no <|{language}|> token")

    def languages(self) -> list[str]:
        """Language codes this export knows (["en"] for an English-only one)."""
        codes = self.whisper.supported_languages  # faster-whisper's list: may hold "yue"
        return sorted(c for c in codes if self.token_id(f"<|{c}|>") is not None)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def features(self, chunks: list[np.ndarray]):
        import ctranslate2

        # Each chunk padded with zeros to 30 s before the STFT, as transformers' extractor does,
        # so that padding frames hold the log-Mel of silence (equal within 3e-5).
        n = int(WINDOW_SECONDS * SAMPLE_RATE)
        fe = self.whisper.feature_extractor
        feats = np.stack(
            [fe(c[:n], padding=n - len(c[:n]))[:, : n // fe.hop_length] for c in chunks]
        )
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(feats, dtype=np.float32))

    def detect_language(self, chunk: np.ndarray) -> str:
        if not self.multilingual:
            return "en"
        best_token, _prob = self.ct2.detect_language(self.features([chunk]))[0][0]
        return best_token[2:-2]

    def prompt(self, opts: TranscribeOptions, language: str | None) -> list[int]:
        ids = [self.token_id("<|startoftranscript|>")]
        if self.multilingual:
            ids += [self.token_id(f"<|{language}|>"), self.token_id(f"<|{opts.task}|>")]
        if not opts.timestamps:
            ids.append(self.token_id("<|notimestamps|>"))
        return ids

    def generate(self, chunks: list[np.ndarray], opts, language) -> list[list[int]]:
        prompt = self.prompt(opts, language)
        # CTranslate2 decodes min(max_length / 2, max_length - len(prompt)) new tokens (OpenAI's
        # half-context cap), so this max_length yields exactly max_new_tokens, as transformers does.
        n = opts.max_new_tokens
        max_length = max(2 * n, n + len(prompt))
        results = self.ct2.generate(
            self.features(chunks),
            [prompt] * len(chunks),
            beam_size=opts.num_beams,
            max_length=max_length,
            suppress_blank=True,
            suppress_tokens=[-1],  # the export's suppress list, from the generation config
        )
        return [r.sequences_ids[0] for r in results]

    def sequential(self, audio: np.ndarray, opts, language) -> list[tuple[float, float, str]]:
        # Temperature 0 only and no prompt from the previous window: the same decoding as above.
        segments, _info = self.whisper.transcribe(
            audio,
            language=language,
            task=opts.task,
            beam_size=opts.num_beams,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=not opts.timestamps,
            max_new_tokens=opts.max_new_tokens,
            vad_filter=False,
        )
        segments = list(segments)  # decoding happens while iterating
        self.sequential_tokens = sum(len(s.tokens) for s in segments)
        return [(s.start, s.end, s.text) for s in segments]


def merge_per_window(raw: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Merge segments into one per 30 s of audio (timestamps off in the sequential strategy)."""
    merged: dict[int, list] = {}
    for start, end, text in raw:
        key = int(start // WINDOW_SECONDS)
        if key in merged:
            merged[key][1] = end
            merged[key][2] += text
        else:
            merged[key] = [start, end, text]
    return [tuple(v) for _, v in sorted(merged.items())]


# --------------------------------------------------------------------------------------------
# Transcriber


class Transcriber:
    """A loaded Whisper model that turns audio of any length into a Transcript.

    >>> t = Transcriber("openai/whisper-small", TranscribeOptions(language="sv"))
    >>> t.transcribe("talk.mp3").segments[0]
    Segment(start=0.0, end=4.2, text='...')
    """

    def __init__(self, model: str | Path, options: TranscribeOptions | None = None, **kwargs):
        options = dataclasses.replace(options or TranscribeOptions(), **kwargs)
        self.model_name = str(model)
        backend = options.backend
        if backend == "auto":
            backend = "ctranslate2" if find_ct2_export(model) else "transformers"
        if backend == "ctranslate2" and not _has_module("faster_whisper"):
            raise ValueError(
                "backend='ctranslate2' needs faster-whisper: pip install faster-whisper"
            )
        self.options = dataclasses.replace(options, backend=backend)
        cls = CTranslate2Backend if backend == "ctranslate2" else TransformersBackend
        self.backend = cls(model, self.options)
        self.backend.check_language(normalize_language(self.options.language))

    def transcribe(
        self, audio: np.ndarray | str | Path | bytes, name: str | None = None, **overrides
    ) -> Transcript:
        """Transcribe a waveform (mono float32, 16 kHz) or any file load_audio decodes.

        `overrides` replace decoding options for this call only (language, task, timestamps,
        max_new_tokens, batch_size, num_beams, strategy, max_duration). Raises AudioError naming
        the file for undecodable or over-long audio, NoSpeechError when it holds only silence.
        """
        fixed = {"backend", "device", "compute_type", "cpu_threads"} & overrides.keys()
        if fixed:
            raise ValueError(
                f"{sorted(fixed)} are fixed when the model loads; make a new Transcriber"
            )
        opts = dataclasses.replace(self.options, **overrides)
        label = name or (str(audio) if isinstance(audio, (str, Path)) else "<audio>")
        if not isinstance(audio, np.ndarray):
            audio = load_audio(audio, name=label)
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        duration = len(audio) / SAMPLE_RATE
        if opts.max_duration is not None and duration > opts.max_duration:
            raise AudioError(
                f"{label}: {format_duration(duration)} of audio is over the limit of "
                f"{format_duration(opts.max_duration)} (max_duration)"
            )
        started = time.perf_counter()
        windows = plan_windows(audio)
        voiced = [(s, e) for s, e in windows if not is_silent(audio[s:e])]
        if not voiced:
            raise NoSpeechError(f"{label}: the audio holds only silence, nothing to transcribe")
        language = normalize_language(opts.language)
        self.backend.check_language(language)
        if language is None:
            language = self.backend.detect_language(audio[voiced[0][0] : voiced[0][1]])
        self.last_token_count = None
        if opts.strategy == "sequential":
            raw = self.backend.sequential(audio, opts, language)
            self.last_token_count = getattr(self.backend, "sequential_tokens", None)
            if not opts.timestamps:
                raw = merge_per_window(raw)
        else:
            raw = self.decode_windows(audio, voiced, opts, language)
        segments = clean_segments(raw, duration)
        info = {
            "backend": self.backend.name,
            "strategy": opts.strategy,
            "windows": len(windows),
            "voiced_windows": len(voiced),
            "tokens": self.last_token_count,
            "seconds": round(time.perf_counter() - started, 3),
        }
        return Transcript(
            text=" ".join(s.text for s in segments),
            segments=segments,
            language=language,
            duration=duration,
            task=opts.task,
            info=info,
        )

    def decode_windows(self, audio, windows, opts, language) -> list[tuple[float, float, str]]:
        """Decode independent windows batch_size at a time into (start, end, text) segments."""
        b = self.backend
        raw = []
        self.last_token_count = 0  # text + timestamp tokens decoded, for benchmarks
        for i in range(0, len(windows), opts.batch_size):
            batch = windows[i : i + opts.batch_size]
            tokens = b.generate([audio[s:e] for s, e in batch], opts, language)
            for (s, e), ids in zip(batch, tokens, strict=True):
                self.last_token_count += sum(t < b.eot or t >= b.timestamp_begin for t in ids)
                offset, seconds = s / SAMPLE_RATE, (e - s) / SAMPLE_RATE
                raw += segments_from_tokens(
                    ids, b.decode, b.timestamp_begin, b.eot, offset, seconds
                )
        return raw


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# --------------------------------------------------------------------------------------------
# Writers


def format_duration(seconds: float) -> str:
    """Human duration for messages: '1 h 02 min 05 s', '3 min 20 s', '4.2 s'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = int(round(seconds))
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h} h {m:02d} min {s:02d} s" if h else f"{m} min {s:02d} s"


def format_timestamp(seconds: float, decimal: str = ".") -> str:
    """HH:MM:SS.mmm (VTT) or HH:MM:SS,mmm (SRT, decimal=',')."""
    ms = int(round(max(seconds, 0.0) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


def to_txt(transcript: Transcript) -> str:
    """Plain text, one segment per line."""
    return "".join(f"{s.text}\n" for s in transcript.segments)


def to_srt(transcript: Transcript) -> str:
    """SubRip subtitles: numbered cues, 'HH:MM:SS,mmm --> HH:MM:SS,mmm', blank line between."""
    cues = []
    for i, s in enumerate(transcript.segments, start=1):
        times = f"{format_timestamp(s.start, ',')} --> {format_timestamp(s.end, ',')}"
        cues.append(f"{i}\n{times}\n{s.text}\n")
    return "\n".join(cues)


def to_vtt(transcript: Transcript) -> str:
    """WebVTT subtitles: 'WEBVTT' header, then 'HH:MM:SS.mmm --> HH:MM:SS.mmm' cues."""
    cues = ["WEBVTT\n"]
    for s in transcript.segments:
        # "-->" may not appear inside a cue's text in VTT
        cues.append(
            f"{format_timestamp(s.start)} --> {format_timestamp(s.end)}\n{s.text.replace('-->', '->')}\n"
        )
    return "\n".join(cues)


WRITERS = {"txt": to_txt, "srt": to_srt, "vtt": to_vtt}


def write_outputs(
    transcript: Transcript, out_dir: str | Path, stem: str, formats=("txt", "srt", "vtt")
) -> list[Path]:
    """Write the transcript as <out_dir>/<stem>.<fmt> for each format; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        path.write_text(WRITERS[fmt](transcript), encoding="utf-8")
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------------------
# CTranslate2 export


def write_faster_whisper_files(processor, out_dir: Path):
    """Write the two files faster-whisper reads next to model.bin: tokenizer.json (without it, it
    downloads openai/whisper-tiny's from the Hub) and preprocessor_config.json (mel bins: 80 or 128).

    transformers 5 saves the feature extractor inside processor_config.json, which faster-whisper
    does not read, and the converter's copy_files can only copy files that exist; so both files are
    written from the loaded processor instead.
    """
    processor.tokenizer.backend_tokenizer.save(str(out_dir / "tokenizer.json"))
    processor.feature_extractor.to_json_file(str(out_dir / "preprocessor_config.json"))


def export_ctranslate2(
    model_dir: str | Path,
    out_dir: str | Path | None = None,
    quantization: str | None = None,
    force: bool = False,
) -> Path:
    """Convert a Whisper checkpoint (local dir or Hub id) to CTranslate2 for faster-whisper.

    out_dir defaults to <model_dir>/ctranslate2 (a cache folder for a Hub id, $WHISPER_CT2_CACHE
    or ~/.cache/whisper-ct2), where Transcriber's "auto" backend finds it.
    quantization is CTranslate2's weight type: None keeps float32 (the same weights, bit for bit);
    "int8" quarters the size and is usually faster on CPU; "float16"/"int8_float16" for GPUs.
    The tokenizer and feature settings are copied along so faster-whisper needs no Hub access.
    """
    from ctranslate2.converters import TransformersConverter
    from transformers import WhisperProcessor

    out_dir = Path(out_dir) if out_dir is not None else default_ct2_dir(model_dir)
    if not force and is_ct2_export(out_dir):
        return out_dir
    # Convert into a sibling temp dir and rename, so an interrupted export never looks complete.
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    TransformersConverter(str(model_dir)).convert(str(tmp), quantization=quantization, force=True)
    write_faster_whisper_files(WhisperProcessor.from_pretrained(str(model_dir)), tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir


# --------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m utils.transcription",
        description="Transcribe or translate audio/video files with a Whisper checkpoint.",
    )
    p.add_argument("files", nargs="+", help="audio or video files")
    p.add_argument("--model", required=True, help="checkpoint dir, CTranslate2 export or Hub id")
    p.add_argument("--language", default=None, help="code or name (default: detect)")
    p.add_argument("--task", choices=TASKS, default="transcribe")
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    p.add_argument("--strategy", choices=STRATEGIES, default="batched")
    p.add_argument("--device", default="auto")
    p.add_argument("--compute-type", default="default", help="CTranslate2 compute type")
    p.add_argument("--out", default=None, help="output dir (default: next to each input)")
    p.add_argument("--srt", action="store_true", help="also write .srt subtitles")
    p.add_argument("--vtt", action="store_true", help="also write .vtt subtitles")
    p.add_argument("--no-timestamps", action="store_true", help="one segment per 30 s window")
    p.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS)
    p.add_argument("--max-duration", type=float, default=None, help="refuse longer files (s)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-beams", type=int, default=1)
    p.add_argument(
        "--export-ct2", action="store_true", help="export the model to CTranslate2 first"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Transcribe each file to <out>/<stem>.txt (+ .srt/.vtt); 1 if any file failed, else 0."""
    args = build_parser().parse_args(argv)
    if args.export_ct2:
        print(f"exported to {export_ctranslate2(args.model)}", file=sys.stderr)
    options = TranscribeOptions(
        language=args.language,
        task=args.task,
        timestamps=not args.no_timestamps,
        backend=args.backend,
        strategy=args.strategy,
        device=args.device,
        compute_type=args.compute_type,
        max_duration=args.max_duration,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        num_beams=args.num_beams,
    )
    transcriber = Transcriber(args.model, options)
    formats = ["txt"] + ["srt"] * args.srt + ["vtt"] * args.vtt
    failed = 0
    for file in args.files:
        try:
            result = transcriber.transcribe(file)
        except AudioError as err:  # one bad file does not stop the batch
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            continue
        out_dir = Path(args.out) if args.out else Path(file).parent
        paths = write_outputs(result, out_dir, Path(file).stem, formats)
        print(
            f"{file}: {format_duration(result.duration)}, language {result.language}, "
            f"{len(result.segments)} segments, {result.info['seconds']:.1f} s -> "
            + ", ".join(str(p) for p in paths),
            file=sys.stderr,
        )
        print(result.text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
