"""Whisper's long-form algorithm, run on several streams of one recording at once.

The recording is cut (at pauses) into contiguous streams; every stream runs Whisper's own seek loop
(openai-whisper's transcribe): decode the 30 s window at its position, conditioned on the stream's
previous text, keep the segments its timestamps close, and move the position to the last of those
timestamps, so a window whose decoding stopped early is decoded again from there: no tail is lost.
All streams advance in lockstep, one batched decoder call per round, which is what makes it as
fast as decoding independent windows. "sequential" is one stream; "windows" decodes the windows of
`plan_windows` once each, independently (no previous text, no seeking).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..audio import SAMPLE_RATE
from .decoding import PROMPT_RESET_TEMPERATURE, Decoded, decode_with_fallback, is_silent_window
from .options import TranscribeOptions
from .timing import Word, fit_words
from .vocab import SAMPLES_PER_TIMESTAMP, TIME_PRECISION, Vocab
from .windows import ENERGY_FRAME, SILENCE_DBFS, WINDOW, frame_energy_db, is_silent

# Less audio than this left at the end of a stream is not decoded on its own (20 ms of a word
# cut by the previous window is in that window's timestamps already).
MIN_TAIL = int(0.2 * SAMPLE_RATE)
# A window is decoded again from where the model stopped only if that is at least this far in:
# every round then moves on (Whisper itself may seek by 20 ms; a model that keeps stopping early
# would crawl).
MIN_RESEEK = int(2.0 * SAMPLE_RATE)


@dataclass
class RawSegment:
    """A segment as decoded: times in seconds from the start of the audio, its tokens."""

    start: float
    end: float
    tokens: list[int]
    words: list[Word] = field(default_factory=list)


@dataclass
class Stream:
    """One contiguous part of the recording and where its seek loop stands."""

    start: int  # first sample
    end: int  # one past the last sample
    seek: int  # next sample to decode from
    context: list[int] = field(default_factory=list)  # previous tokens, for the prompt
    segments: list[RawSegment] = field(default_factory=list)
    windows: int = 0  # windows decoded (for the report)


def split_segments(
    tokens: list[int], vocab: Vocab, offset: float, window: int
) -> tuple[list[RawSegment], int, bool]:
    """Whisper's segments of one window's tokens, the samples to seek forward, and whether the
    tokens ended on a single timestamp (nothing more said in the window).

    A segment is closed by two consecutive timestamp tokens; text after the last closed segment
    is unfinished, and the seek stops at that segment's end so it is decoded again.
    """
    tb = vocab.timestamp_begin
    single_end = len(tokens) >= 2 and tokens[-2] < tb <= tokens[-1]
    pairs = [i for i in range(1, len(tokens)) if tokens[i] >= tb and tokens[i - 1] >= tb]
    segments = []
    if pairs:
        slices = pairs + ([len(tokens)] if single_end else [])
        last = 0
        for cut in slices:
            part = tokens[last:cut]
            start = offset + (part[0] - tb) * TIME_PRECISION if part[0] >= tb else offset
            end = offset + (part[-1] - tb) * TIME_PRECISION if part[-1] >= tb else start
            segments.append(RawSegment(start, end, part))
            last = cut
        advance = window if single_end else (tokens[last - 1] - tb) * SAMPLES_PER_TIMESTAMP
    else:
        stamps = [t for t in tokens if t >= tb]
        duration = window / SAMPLE_RATE
        if stamps and stamps[-1] != tb:
            duration = (stamps[-1] - tb) * TIME_PRECISION
        segments.append(RawSegment(offset, offset + duration, tokens))
        advance = window
    return segments, int(advance), single_end


def _speech_after(audio: np.ndarray, sample: int) -> bool:
    """True when the audio from `sample` on still holds sound (not a pause or silence)."""
    rest = audio[sample:]
    return rest.size >= ENERGY_FRAME and float(frame_energy_db(rest).max()) >= SILENCE_DBFS


def transcribe_streams(
    backend,
    audio: np.ndarray,
    bounds: list[tuple[int, int]],
    opts: TranscribeOptions,
    language: str | None,
    vocab: Vocab,
    seek: bool = True,
) -> tuple[list[RawSegment], dict]:
    """Run the seek loop on every stream of `bounds` in lockstep (with `seek` False: decode each
    range once, independently). Returns the segments in time order and counts for the report."""
    streams = [Stream(s, e, s) for s, e in bounds]
    rounds = 0
    while True:
        batch = []
        for st in streams:
            while st.end - st.seek >= MIN_TAIL:
                window = audio[st.seek : min(st.seek + WINDOW, st.end)]
                if not is_silent(window):
                    batch.append((st, window))
                    break
                st.seek += len(window)  # nothing to hear: no decoding, no hallucination
        if not batch:
            break
        rounds += 1
        for i in range(0, len(batch), opts.batch_size):
            _decode_round(
                backend, audio, batch[i : i + opts.batch_size], opts, language, vocab, seek
            )
    segments = sorted((s for st in streams for s in st.segments), key=lambda s: s.start)
    return segments, {
        "streams": len(streams),
        "rounds": rounds,
        "windows": sum(st.windows for st in streams),
    }


def _decode_round(
    backend, audio, batch, opts: TranscribeOptions, language, vocab: Vocab, seek: bool
) -> None:
    encoded = backend.encode([window for _, window in batch])
    prompts = [
        vocab.prompt(st.context if opts.condition_on_previous_text else [], language, opts.task)
        for st, _ in batch
    ]
    prompts = _same_length_context(prompts, vocab)
    decoded = decode_with_fallback(backend, encoded, prompts, opts, vocab)
    for row, ((st, window), d) in enumerate(zip(batch, decoded, strict=True)):
        st.windows += 1
        if not seek:
            st.seek = st.end
        if is_silent_window(d, opts):
            st.seek += len(window) if seek else 0
            continue
        offset = st.seek / SAMPLE_RATE
        segments, advance, single_end = split_segments(d.tokens, vocab, offset, len(window))
        segments = [s for s in segments if vocab.text_tokens(s.tokens)]
        if segments and (
            opts.word_timestamps or _needs_alignment_to_seek(d, vocab, window, single_end)
        ):
            _add_words(backend, encoded, row, segments, vocab, language, opts, offset, len(window))
        if seek:
            advance = _keep_the_tail(audio, st, window, segments, advance, single_end)
            st.seek += advance if advance > 0 else len(window)  # never stand still
        st.segments += segments
        _update_context(st, d, segments, opts)


def _same_length_context(prompts: list[list[int]], vocab: Vocab) -> list[list[int]]:
    """Prompts of one batch with their previous text cut to a common length (the shortest
    non-empty one), so that every row's tokens sit at the positions Whisper was trained with and
    no padding is needed; rows without previous text keep none."""
    lengths = [p.index(vocab.sot) for p in prompts]
    common = min((n for n in lengths if n > 0), default=0)
    out = []
    for prompt, n in zip(prompts, lengths, strict=True):
        if n > common:
            prompt = [vocab.sot_prev, *prompt[n - common + 1 : n], *prompt[n:]]
        out.append(prompt)
    return out


def _needs_alignment_to_seek(
    d: Decoded, vocab: Vocab, window: np.ndarray, single_end: bool
) -> bool:
    # No timestamp closed the text of a full window: only the words' times say where it ended.
    return (
        len(window) == WINDOW
        and not single_end
        and not any(t >= vocab.timestamp_begin for t in d.tokens[1:])
    )


def _keep_the_tail(audio, st: Stream, window, segments, advance: int, single_end: bool) -> int:
    """The seek advance, made shorter when the model stopped before the window's speech ended:
    Whisper would skip the rest of the window; here it is decoded next round."""
    if len(window) < WINDOW or not segments:
        return advance
    said_until = max(s.end for s in segments)
    if segments[-1].words:
        said_until = max(said_until, segments[-1].words[-1].end)
    until = int(round(said_until * SAMPLE_RATE)) - st.seek
    if MIN_RESEEK <= until < advance and _speech_after(
        audio[: st.seek + len(window)], st.seek + until
    ):
        return until
    return advance


def _add_words(
    backend,
    encoded,
    row,
    segments: list[RawSegment],
    vocab: Vocab,
    language,
    opts,
    offset: float,
    window: int,
) -> None:
    text = [t for s in segments for t in vocab.text_tokens(s.tokens)]
    if not text:
        return
    words = backend.align(
        encoded, row, vocab.sot_sequence(language, opts.task), text, window, offset
    )
    # Hand the words out to their segments by token count, then keep each inside its segment.
    k = 0
    for s in segments:
        n, taken, own = len(vocab.text_tokens(s.tokens)), 0, []
        while k < len(words) and taken < n:
            own.append(words[k][0])
            taken += words[k][1]
            k += 1
        s.words = fit_words(own, s.start, max(s.end, own[-1].end if own else s.end))
        if s.words:
            s.end = max(s.end, s.words[-1].end)


def _update_context(
    st: Stream, d: Decoded, segments: list[RawSegment], opts: TranscribeOptions
) -> None:
    if d.temperature > PROMPT_RESET_TEMPERATURE or d.loop_cut:
        st.context = []  # doubtful text would mislead the next window (and loops feed on it)
    else:
        st.context += [t for s in segments for t in s.tokens]
