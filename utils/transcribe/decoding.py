"""Decoding a batch of windows with Whisper's guards against hallucination and repetition.

Each window is decoded greedily first. A window whose text compresses too well (a repetition
loop: "and and and ...") or whose tokens are improbable is decoded again at the next temperature
of `temperatures`, as openai-whisper and faster-whisper do; if every temperature fails, the most
probable attempt is kept and any loop still in it is cut. A window whose <|nospeech|> probability
is high (and log-probability low) is reported silent.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from .options import TranscribeOptions
from .vocab import MAX_LENGTH, Vocab

# A pattern of 1-12 tokens repeated more than this many times in a row is a loop, not speech
# ("no, no, no" is three; fine-tuned models on long audio produce dozens).
MAX_REPEATS = 3
MAX_PATTERN_TOKENS = 12
# Previous text is dropped after a window decoded this hot: it was doubtful, and loops feed on it.
PROMPT_RESET_TEMPERATURE = 0.5


@dataclass
class Decoded:
    """One window's decoding."""

    tokens: list[int]  # generated tokens (text and timestamps), without the prompt and eot
    avg_logprob: float  # mean log-probability per token (eot included)
    no_speech_prob: float  # probability of <|nospeech|> right after the prompt
    temperature: float = 0.0  # the temperature of the kept attempt
    compression_ratio: float = 0.0  # of its text
    loop_cut: bool = False  # a repetition loop was cut out of it


def compression_ratio(text: str) -> float:
    """len(text) / len(zlib(text)): about 1-2 for speech, above 2.4 for a repetition loop."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def cut_repetitions(
    tokens: list[int], vocab: Vocab, max_repeats: int = MAX_REPEATS
) -> tuple[list[int], bool]:
    """`tokens` with every run of a text pattern repeated more than `max_repeats` times in a row
    cut to `max_repeats` copies; and whether anything was cut. Timestamps are not patterns."""
    out, cut = list(tokens), False
    for n in range(1, MAX_PATTERN_TOKENS + 1):
        i = 0
        while i + n * (max_repeats + 1) <= len(out):
            pattern = out[i : i + n]
            if any(t >= vocab.eot for t in pattern):
                i += 1
                continue
            copies = 1
            while out[i + copies * n : i + (copies + 1) * n] == pattern:
                copies += 1
            if copies > max_repeats:
                del out[i + max_repeats * n : i + copies * n]
                cut = True
            i += 1
    return out, cut


def _needs_fallback(d: Decoded, opts: TranscribeOptions) -> bool:
    low = opts.log_prob_threshold is not None and d.avg_logprob < opts.log_prob_threshold
    if opts.no_speech_threshold is not None and d.no_speech_prob > opts.no_speech_threshold and low:
        return False  # silence: decoding again will not help
    loop = (
        opts.compression_ratio_threshold is not None
        and d.compression_ratio > opts.compression_ratio_threshold
    )
    return loop or low


def decode_with_fallback(
    backend, encoded, prompts: list[list[int]], opts: TranscribeOptions, vocab: Vocab
) -> list[Decoded]:
    """Decode every row of an encoded batch with its prompt, falling back to higher temperatures
    row by row; returns one Decoded per row."""
    attempts: list[list[Decoded]] = [[] for _ in prompts]
    pending = list(range(len(prompts)))
    for temperature in opts.temperatures:
        new_tokens = min(opts.max_new_tokens, MAX_LENGTH - max(len(prompts[r]) for r in pending))
        results = backend.generate(
            encoded, pending, [prompts[r] for r in pending], temperature, new_tokens
        )
        still = []
        for row, (tokens, sum_logprob, no_speech) in zip(pending, results, strict=True):
            text = vocab.decode(vocab.text_tokens(tokens))
            d = Decoded(
                tokens,
                sum_logprob / (len(tokens) + 1),
                no_speech,
                temperature,
                compression_ratio(text),
            )
            attempts[row].append(d)
            if _needs_fallback(d, opts):
                still.append(row)
        pending = still
        if not pending:
            break
    chosen = []
    for row_attempts in attempts:
        last = row_attempts[-1]
        if len(row_attempts) == len(opts.temperatures) and _needs_fallback(last, opts):
            # every temperature failed: the most probable attempt that is not a loop, if any
            not_loops = [
                d
                for d in row_attempts
                if opts.compression_ratio_threshold is None
                or d.compression_ratio <= opts.compression_ratio_threshold
            ]
            last = max(not_loops or row_attempts, key=lambda d: d.avg_logprob)
        last.tokens, last.loop_cut = cut_repetitions(last.tokens, vocab)
        chosen.append(last)
    return chosen


def is_silent_window(d: Decoded, opts: TranscribeOptions) -> bool:
    """Whisper's no-speech rule: <|nospeech|> likely and the decoded tokens improbable."""
    if opts.no_speech_threshold is None or d.no_speech_prob <= opts.no_speech_threshold:
        return False
    return opts.log_prob_threshold is None or d.avg_logprob < opts.log_prob_threshold
