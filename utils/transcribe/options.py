"""TranscribeOptions: how a Transcriber loads its model and decodes, declared once (notebook 03,
the app and `python -m utils.transcribe` follow from it)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import coerce
from ..errors import ConfigError
from ..whisper_lang import check_task, language_code
from .windows import MAX_PAUSE_SECONDS

# Whisper decodes at most 224 tokens per window: half its 448 decoder positions (OpenAI's
# sample_len = n_text_ctx // 2; CTranslate2 applies the same cap).
MAX_NEW_TOKENS = 224
BACKENDS = ("auto", "transformers", "ctranslate2")
# "streams": the recording cut into up to `batch_size` contiguous streams, each running Whisper's
# own seek loop, all decoded together (as accurate as sequential, as fast as batched); "sequential":
# one stream, one window after another; "windows": independent 30 s windows (the old, fastest and
# least accurate way: no previous text, a window's tail is lost when the model stops early).
STRATEGIES = ("streams", "sequential", "windows")


@dataclass(frozen=True)
class TranscribeOptions:
    """How to transcribe; each field is a parameter of notebook 03 and a flag of the CLI."""

    # spoken language: code ("sv"), name ("swedish") or token ("<|sv|>"); None: the model's own
    # (a fine-tuned model's generation config carries it), else detected from the first speech
    language: str | None = None
    # "transcribe" keeps the spoken language; "translate" outputs English
    task: str = "transcribe"
    # show segment timestamps (off: one segment per ~30 s); decoding always uses them to seek
    timestamps: bool = True
    # also time every word (cross-attention alignment on the checkpoint's alignment heads)
    word_timestamps: bool = False
    # "auto" (a CTranslate2 export next to the model when there is one), "transformers" or
    # "ctranslate2" (exported on first use into the model dir, or a cache dir for Hub ids)
    backend: str = "auto"
    # "streams" (default), "sequential" or "windows" (see STRATEGIES)
    strategy: str = "streams"
    # "auto" (CUDA when available), "cpu", "cuda" or "cuda:N"
    device: str = "auto"
    # CTranslate2 compute type: "default" (the export's weights on CPU, float16 on a GPU), "int8"...
    compute_type: str = "default"
    # longest audio accepted, in seconds (None: no limit); the app keeps requests bounded
    max_duration: float | None = 4 * 3600.0
    # tokens decoded per 30 s window at most (Whisper's own limit is 224)
    max_new_tokens: int = MAX_NEW_TOKENS
    # streams (or windows) decoded together at most: a round of the seek loop costs its decoder
    # steps once whatever the batch, so more is faster until memory runs out (16: 7 minutes of
    # speech in one round)
    batch_size: int = 16
    # beam size (1: greedy); beams run on the CTranslate2 backend only
    num_beams: int = 1
    # condition each window on the text before it in its stream (Whisper's default; where the
    # same sentences recur, the model may copy them from the prompt instead of listening)
    condition_on_previous_text: bool = True
    # sampling temperatures tried in turn while a window's decoding looks wrong (Whisper's
    # fallback); the first is greedy
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    # a window whose text zlib-compresses better than this is a repetition loop: decode again
    compression_ratio_threshold: float | None = 2.4
    # a window whose average token log-probability is below this is doubtful: decode again
    log_prob_threshold: float | None = -1.0
    # <|nospeech|> probability above this (with a low log-probability too) marks a window silent
    no_speech_threshold: float | None = 0.6
    # silences (below -55 dBFS) longer than this many seconds are shortened to it before decoding:
    # fewer windows to decode, times still those of the original audio (None: decode all of it)
    max_pause: float | None = MAX_PAUSE_SECONDS
    # skip what Silero VAD finds no speech in before decoding (against hallucinations in noise)
    vad_filter: bool = False
    # CPU threads for either backend; 0 uses every core
    cpu_threads: int = 0

    def __post_init__(self):
        coerce(self)
        checks = {
            "backend": self.backend in BACKENDS,
            "strategy": self.strategy in STRATEGIES,
            "batch_size": self.batch_size >= 1,
            "num_beams": self.num_beams >= 1,
            "cpu_threads": self.cpu_threads >= 0,
            "max_duration": self.max_duration is None or self.max_duration > 0,
            "max_pause": self.max_pause is None or self.max_pause >= 0.1,
            "max_new_tokens": 1 <= self.max_new_tokens <= MAX_NEW_TOKENS,
            "temperatures": bool(self.temperatures) and all(0 <= t <= 2 for t in self.temperatures),
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"TranscribeOptions.{name}={getattr(self, name)!r} is not valid")
        check_task(self.task, "TranscribeOptions.task")
        language_code(self.language, "TranscribeOptions.language")  # an unknown one is refused
