"""What is decoded: the recording without its long silences, and with `vad_filter` only what
Silero VAD hears as speech.

Every silence longer than `max_pause` is shortened to it (windows.sound_regions): nothing is said
in it, and the 30 s windows then hold more speech, so fewer are decoded. Whisper hallucinates on
long silence, music and noise ("Thank you for watching."); with `vad_filter` the audio also goes
through Silero VAD (the ONNX model faster-whisper ships, run on the CPU). The kept regions are
joined and transcribed, and every time is mapped back onto the original recording.
"""

from __future__ import annotations

import numpy as np

from ..audio import SAMPLE_RATE

# Pauses up to 2 s stay inside a speech region, and 0.4 s of audio is kept on each side of it
# (faster-whisper's defaults): words at region edges are not clipped.
MIN_SILENCE_MS = 2000
SPEECH_PAD_MS = 400


class SpeechMap:
    """Where each second of the joined audio came from in the original recording."""

    def __init__(self, regions: list[tuple[int, int]]):
        self.regions = regions  # (start, end) samples in the original, in order
        lengths = [e - s for s, e in regions]
        self.joined_starts = (
            np.concatenate([[0], np.cumsum(lengths)])[:-1] if regions else np.zeros(0)
        )

    def original_time(self, seconds: float, end: bool = False) -> float:
        """A time in the joined audio -> the same moment in the original recording. A time where
        two regions meet is the start of the later one, or with `end` the end of the earlier one
        (a segment ending there ended before the cut-out silence)."""
        if not self.regions:
            return seconds
        sample = seconds * SAMPLE_RATE
        side = "left" if end else "right"
        k = int(np.searchsorted(self.joined_starts, sample, side=side)) - 1
        k = max(0, min(k, len(self.regions) - 1))
        start, stop = self.regions[k]
        return min(start + sample - self.joined_starts[k], stop) / SAMPLE_RATE


def silero_regions(audio: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) samples of what Silero VAD hears as speech, padded as faster-whisper does."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(min_silence_duration_ms=MIN_SILENCE_MS, speech_pad_ms=SPEECH_PAD_MS)
    return [(r["start"], r["end"]) for r in get_speech_timestamps(audio, options, SAMPLE_RATE)]


def intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The sample ranges in both of two sorted, disjoint range lists."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def join(audio: np.ndarray, regions: list[tuple[int, int]]) -> tuple[np.ndarray, SpeechMap]:
    """The regions of `audio` joined together, and the map back to the original times."""
    if not regions:
        return audio[:0], SpeechMap([])
    if regions == [(0, len(audio))]:  # nothing cut: no copy of a long recording
        return audio, SpeechMap(regions)
    return np.concatenate([audio[s:e] for s, e in regions]), SpeechMap(regions)
