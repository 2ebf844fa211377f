"""Transcriber: a loaded Whisper that turns audio of any length into a Transcript.

t = Transcriber("runs/model")                   # a fine-tuned folder, a Hub id, a CT2 export
result = t.transcribe("talk.mp3")               # segments, text, language; words on request
write_outputs(result, "out", "talk")            # talk.txt, talk.srt, talk.vtt
"""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..audio import SAMPLE_RATE, format_duration, load_audio
from ..config import replace
from ..errors import AudioError, ConfigError, NoSpeechError, TooLongError
from ..whisper_lang import language_code
from .longform import RawSegment, transcribe_streams
from .options import TranscribeOptions
from .timing import Word, fit_words
from .vad import SpeechMap, intersect, join, silero_regions
from .windows import WINDOW_SECONDS, is_silent, plan_streams, plan_windows, sound_regions

MIN_SEGMENT_SECONDS = 0.02  # one timestamp step: the shortest cue a subtitle file gets
# Fixed when the model loads; a new Transcriber is needed to change them.
LOAD_OPTIONS = {"backend", "device", "compute_type", "cpu_threads"}


class Segment(NamedTuple):
    """One stretch of speech: start and end in seconds from the start of the audio, its text,
    and its words with their own times (when word timestamps were asked for)."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


@dataclass
class Transcript:
    """What a Transcriber returns for one recording."""

    text: str  # the whole transcript, segments joined with spaces
    segments: list[Segment]  # in time order, start_i <= end_i <= start_{i+1}
    language: str | None  # the language code used (given, the model's, or detected)
    duration: float = 0.0  # seconds of audio
    task: str = "transcribe"
    info: dict = field(default_factory=dict)  # backend, strategy, windows, seconds taken


def clean_segments(raw: list[tuple], duration: float | None = None) -> list[Segment]:
    """Drop empty texts and make times monotonic within the audio: start_i < end_i <= start_{i+1}
    <= duration. Text that would start after the audio's end joins the previous segment."""
    limit = float("inf") if duration is None else duration
    out: list[Segment] = []
    prev_end = 0.0
    for start, end, text, *rest in raw:
        words = tuple(rest[0]) if rest else ()
        text = " ".join(text.split())
        if not text:
            continue
        start = min(max(float(start), prev_end), limit)
        end = min(max(float(end), start + MIN_SEGMENT_SECONDS), limit)
        if end - start < MIN_SEGMENT_SECONDS / 2:  # no time left at the end of the audio
            if out:
                last = out[-1]
                out[-1] = last._replace(text=f"{last.text} {text}", words=last.words + words)
                continue
            start = max(0.0, end - MIN_SEGMENT_SECONDS)
        words = tuple(fit_words(words, start, end))  # alignment may overlap neighbours
        out.append(Segment(round(start, 3), round(end, 3), text, words))
        prev_end = out[-1].end
    return out


def merge_per_window(segments: list[Segment], duration: float) -> list[Segment]:
    """One segment per 30 s of audio, spanning it (what the transcript shows without timestamps)."""
    merged: dict[int, list] = {}
    for s in segments:
        merged.setdefault(int(s.start // WINDOW_SECONDS), []).append(s)
    out = []
    for k, parts in sorted(merged.items()):
        start, end = k * WINDOW_SECONDS, min((k + 1) * WINDOW_SECONDS, duration)
        words = tuple(w for p in parts for w in p.words)
        out.append(Segment(round(start, 3), round(end, 3), " ".join(p.text for p in parts), words))
    return out


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


class Transcriber:
    """A loaded Whisper model that turns audio of any length into a Transcript."""

    def __init__(self, model: str | Path, options: TranscribeOptions | None = None, **kwargs):
        from .backend_ct2 import CTranslate2Backend
        from .backend_hf import TransformersBackend
        from .export import find_ct2_export

        options = replace(options or TranscribeOptions(), **kwargs)
        self.model_name = str(model)
        backend = options.backend
        if backend == "auto":
            backend = "ctranslate2" if find_ct2_export(model) else "transformers"
        if backend == "ctranslate2" and not _has_module("faster_whisper"):
            raise ConfigError(
                "backend='ctranslate2' needs faster-whisper: pip install faster-whisper"
            )
        if backend == "transformers" and options.num_beams > 1:
            raise ConfigError(
                "TranscribeOptions.num_beams > 1 needs backend='ctranslate2' (beam search)"
            )
        self.options = dataclasses.replace(options, backend=backend)
        cls = CTranslate2Backend if backend == "ctranslate2" else TransformersBackend
        self.backend = cls(model, self.options)
        self.abilities = self.backend.vocab.abilities
        # The language: the options', else the model's own (a fine-tuned one carries it), else
        # detected per recording. What the checkpoint cannot decode is refused here, once.
        self.language = language_code(options.language) or language_code(
            self.backend.model_language
        )
        self.language, _ = self._check(self.language, options.task)

    def _check(self, language: str | None, task: str) -> tuple[str | None, str]:
        return self.abilities.check(self.model_name, language, task)

    def languages(self) -> list[str]:
        """Language codes this checkpoint decodes (["en"] for an English-only one)."""
        return list(self.abilities.languages)

    def tasks(self) -> list[str]:
        """ "transcribe", and "translate" for multilingual checkpoints."""
        return list(self.abilities.tasks)

    def transcribe(
        self, audio: np.ndarray | str | Path | bytes, name: str | None = None, **overrides
    ) -> Transcript:
        """Transcribe a waveform (mono float32, 16 kHz) or any file load_audio decodes.

        `overrides` replace decoding options for this call only. Raises AudioError naming the file
        for undecodable or over-long audio, NoSpeechError when it holds only silence, ModelError
        for a language or task the checkpoint cannot do.
        """
        fixed = LOAD_OPTIONS & overrides.keys()
        if fixed:
            raise ConfigError(
                f"{sorted(fixed)} are fixed when the model loads; make a new Transcriber"
            )
        opts = replace(self.options, **overrides)
        label = name or (str(audio) if isinstance(audio, (str, Path)) else "<audio>")
        audio = self._load(audio, label, opts.max_duration)
        duration = len(audio) / SAMPLE_RATE
        if opts.max_duration is not None and duration > opts.max_duration:
            raise AudioError(
                f"{label}: {format_duration(duration)} of audio is over the limit of "
                f"{format_duration(opts.max_duration)} (max_duration)"
            )
        started = time.perf_counter()
        language = (
            language_code(opts.language, "language") if "language" in overrides else self.language
        )
        language, task = self._check(language, opts.task)
        speech, speech_map = _decoded_audio(audio, opts)
        if is_silent(speech):
            raise NoSpeechError(f"{label}: the audio holds only silence, nothing to transcribe")
        if language is None:
            language = self.backend.detect_language(_first_sound(speech))
        raw, counts = self._decode(speech, dataclasses.replace(opts, task=task), language)
        raw = [_mapped(s, speech_map) for s in raw]
        segments = clean_segments(
            [
                (
                    s.start,
                    s.end,
                    self.backend.vocab.decode(self.backend.vocab.text_tokens(s.tokens)),
                    s.words,
                )
                for s in raw
            ],
            duration,
        )
        if not opts.timestamps:
            segments = merge_per_window(segments, duration)
        info = {
            "backend": self.backend.name,
            "strategy": opts.strategy,
            **counts,
            "decoded_seconds": round(len(speech) / SAMPLE_RATE, 3),
            "seconds": round(time.perf_counter() - started, 3),
        }
        return Transcript(
            " ".join(s.text for s in segments), segments, language, duration, task, info
        )

    def _load(self, audio, label: str, max_duration: float | None) -> np.ndarray:
        if isinstance(audio, np.ndarray):
            return np.ascontiguousarray(audio, dtype=np.float32)
        try:
            return load_audio(audio, name=label, max_seconds=max_duration)
        except TooLongError as err:  # decoding stopped at the limit: say so as for arrays
            raise AudioError(
                f"{label}: {format_duration(err.seconds)} of audio is over the limit of "
                f"{format_duration(max_duration)} (max_duration)"
            ) from None

    def _decode(
        self, audio: np.ndarray, opts: TranscribeOptions, language: str | None
    ) -> tuple[list[RawSegment], dict]:
        vocab = self.backend.vocab
        if opts.strategy == "windows":
            return transcribe_streams(
                self.backend, audio, plan_windows(audio), opts, language, vocab, seek=False
            )
        count = 1 if opts.strategy == "sequential" else opts.batch_size
        return transcribe_streams(
            self.backend, audio, plan_streams(audio, count), opts, language, vocab
        )


def _first_sound(audio: np.ndarray) -> np.ndarray:
    """The first 30 s window that holds sound (for language detection)."""
    for start, end in plan_windows(audio):
        if not is_silent(audio[start:end]):
            return audio[start:end]
    return audio[: int(WINDOW_SECONDS * SAMPLE_RATE)]


def _decoded_audio(audio: np.ndarray, opts: TranscribeOptions) -> tuple[np.ndarray, SpeechMap]:
    """The audio to decode (long silences shortened, with vad_filter only Silero's speech) and
    the map from its times back to the recording's."""
    regions = [(0, len(audio))]
    if opts.vad_filter:
        regions = silero_regions(audio)
    if opts.max_pause is not None:
        regions = intersect(regions, sound_regions(audio, opts.max_pause))
    return join(audio, regions)


def _mapped(segment: RawSegment, speech_map: SpeechMap) -> RawSegment:
    back = speech_map.original_time
    words = [
        Word(back(w.start), back(w.end, end=True), w.text, w.probability) for w in segment.words
    ]
    return RawSegment(back(segment.start), back(segment.end, end=True), segment.tokens, words)
