"""The voice-activity filter: only what Silero VAD hears as speech is decoded.

Whisper hallucinates on long silence, music and noise ("Thank you for watching."). With
`vad_filter` the audio goes through Silero VAD first (the ONNX model faster-whisper ships, run on
the CPU); the speech regions are joined and transcribed, and every time is mapped back onto the
original recording.
"""

from __future__ import annotations

import numpy as np

from ..audio import SAMPLE_RATE

# Pauses up to 2 s stay inside a speech region, and 0.4 s of audio is kept on each side of it
# (faster-whisper's defaults): words at region edges are not clipped.
MIN_SILENCE_MS = 2000
SPEECH_PAD_MS = 400


class SpeechMap:
    """Where each second of the joined speech audio came from in the original recording."""

    def __init__(self, regions: list[tuple[int, int]]):
        self.regions = regions  # (start, end) samples in the original, in order
        lengths = [e - s for s, e in regions]
        self.joined_starts = (
            np.concatenate([[0], np.cumsum(lengths)])[:-1] if regions else np.zeros(0)
        )

    def original_time(self, seconds: float) -> float:
        """A time in the joined audio -> the same moment in the original recording."""
        if not self.regions:
            return seconds
        sample = seconds * SAMPLE_RATE
        k = int(np.searchsorted(self.joined_starts, sample, side="right")) - 1
        k = max(0, min(k, len(self.regions) - 1))
        start, end = self.regions[k]
        return min(start + sample - self.joined_starts[k], end) / SAMPLE_RATE


def speech_only(audio: np.ndarray) -> tuple[np.ndarray, SpeechMap]:
    """The speech regions of `audio` joined together, and the map back to the original times."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(min_silence_duration_ms=MIN_SILENCE_MS, speech_pad_ms=SPEECH_PAD_MS)
    regions = [(r["start"], r["end"]) for r in get_speech_timestamps(audio, options, SAMPLE_RATE)]
    if not regions:
        return audio[:0], SpeechMap([])
    return np.concatenate([audio[s:e] for s, e in regions]), SpeechMap(regions)
