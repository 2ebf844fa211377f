"""Word timestamps: which audio frames each text token attends to, and the words they make.

Whisper's alignment heads (a few cross-attention heads per checkpoint, listed in its generation
config) attend to the audio a token was read from. Their weights, normalized and median-filtered,
give a token x frame cost matrix; dynamic time warping finds the monotonic path through it, and the
frames where the path moves to the next token are the token boundaries (openai-whisper's
timing.py, faster-whisper's find_alignment). Tokens are then grouped into words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOKENS_PER_SECOND = 50  # encoder positions per second: one per 20 ms
MEDIAN_FILTER_WIDTH = 7  # frames smoothed over in the attention weights (OpenAI's default)
# Attached to the neighbouring word instead of standing alone (OpenAI's defaults).
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


@dataclass
class Word:
    """One word: start and end in seconds from the start of the audio, its text, and the mean
    probability of its tokens."""

    start: float
    end: float
    text: str
    probability: float


def median_filter(x: np.ndarray, width: int = MEDIAN_FILTER_WIDTH) -> np.ndarray:
    """Median over a sliding window along the last axis (edges reflected), as OpenAI's."""
    if width <= 1 or x.shape[-1] <= width // 2:
        return x
    pad = width // 2
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1)
    return np.median(windows, axis=-1)


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest monotonic path through a [tokens, frames] cost matrix: (token, frame) pairs."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    trace = np.zeros((n + 1, m + 1), dtype=np.int8)  # 0: diagonal, 1: up (token), 2: left (frame)
    for i in range(1, n + 1):
        row, prev = acc[i], acc[i - 1]
        for j in range(1, m + 1):
            c0, c1, c2 = prev[j - 1], prev[j], row[j - 1]
            if c0 <= c1 and c0 <= c2:
                best, t = c0, 0
            elif c1 <= c2:
                best, t = c1, 1
            else:
                best, t = c2, 2
            row[j] = cost[i - 1, j - 1] + best
            trace[i, j] = t
    i, j, path = n, m, []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        step = trace[i, j] if i > 0 and j > 0 else (1 if j == 0 else 2)
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    path = np.array(path[::-1])
    return path[:, 0], path[:, 1]


def path_from_attention(weights: np.ndarray, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(token indices, frame indices) of the alignment path, from the alignment heads' attention
    weights [heads, tokens, encoder positions] over the text tokens."""
    w = weights[:, :, : max(1, num_frames // 2)]
    w = (w - w.mean(axis=-2, keepdims=True)) / (w.std(axis=-2, keepdims=True) + 1e-8)
    matrix = median_filter(w).mean(axis=0)
    return dtw(-matrix.astype(np.float64))


def split_words(tokens: list[int], decode) -> tuple[list[str], list[list[int]]]:
    """Words (with their leading space) and their tokens: a token starting with a space or that
    is punctuation begins a new word (OpenAI's split_tokens_on_spaces, after merging tokens that
    only together decode to whole characters)."""
    pieces, piece_tokens, current = [], [], []
    for token in tokens:
        current.append(token)
        text = decode(current)
        if "\ufffd" not in text:  # a whole character at last
            pieces.append(text)
            piece_tokens.append(current)
            current = []
    words, word_tokens = [], []
    for text, toks in zip(pieces, piece_tokens, strict=True):
        starts_word = (
            text.startswith(" ") or text.strip() in APPEND_PUNCTUATIONS + PREPEND_PUNCTUATIONS
        )
        if not words or starts_word:
            words.append(text)
            word_tokens.append(list(toks))
        else:
            words[-1] += text
            word_tokens[-1].extend(toks)
    return words, word_tokens


def words_from_path(
    tokens: list[int], token_probs: np.ndarray, text_indices, time_indices, decode, offset: float
) -> list[tuple[Word, int]]:
    """(word, its number of tokens) with times from an alignment path over `tokens` plus a final
    end-of-text row (OpenAI's find_alignment), punctuation attached to its neighbours."""
    words, word_tokens = split_words(tokens, decode)
    if not words:
        return []
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = time_indices[jumps] / TOKENS_PER_SECOND
    bounds = np.pad(np.cumsum([len(t) for t in word_tokens]), (1, 0))
    out = []
    for k, text in enumerate(words):
        start, end = int(bounds[k]), int(bounds[k + 1])
        t0 = float(jump_times[min(start, len(jump_times) - 1)])
        t1 = float(jump_times[min(end, len(jump_times) - 1)])
        probability = float(np.mean(token_probs[start:end])) if end > start else 0.0
        out.append(
            (
                Word(round(offset + t0, 3), round(offset + max(t0, t1), 3), text, probability),
                end - start,
            )
        )
    return merge_punctuations(out)


def merge_punctuations(words: list[tuple[Word, int]]) -> list[tuple[Word, int]]:
    """Attach opening punctuation to the next word and closing punctuation to the previous one
    (token counts added up, so words still map onto their tokens)."""
    merged: list[tuple[Word, int]] = []
    carry = None
    for word, n in words:
        if carry is not None:
            word, n = (
                Word(
                    carry[0].start, word.end, carry[0].text + word.text.lstrip(), word.probability
                ),
                n + carry[1],
            )
            carry = None
        stripped = word.text.strip()
        if stripped and all(c in PREPEND_PUNCTUATIONS for c in stripped):
            carry = (word, n)
        elif (
            merged
            and stripped
            and all(c in APPEND_PUNCTUATIONS for c in stripped)
            and not word.text.startswith(" ")
        ):
            last, m = merged[-1]
            merged[-1] = (
                Word(last.start, max(last.end, word.end), last.text + word.text, last.probability),
                m + n,
            )
        else:
            merged.append((word, n))
    if carry is not None:
        merged.append(carry)
    return merged


def fit_words(words: list[Word], start: float, end: float) -> list[Word]:
    """Words clipped into their segment [start, end] and made non-decreasing."""
    out, last = [], start
    for w in words:
        s = min(max(w.start, last), end)
        e = min(max(w.end, s), end)
        out.append(Word(round(s, 3), round(e, 3), w.text.strip(), w.probability))
        last = e
    return [w for w in out if w.text]
