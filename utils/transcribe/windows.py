"""Where to cut a long recording: at its quietest moments, never inside a word.

Whisper sees 30 s at a time. The "windows" strategy cuts the audio into windows of at most 30 s;
the "streams" strategy cuts it into a few long streams that each run Whisper's seek loop. Either
way a cut goes where the 20 ms energy is lowest near the wanted place, which in ordinary speech is
a pause between sentences; windows that hold no sound are skipped rather than "transcribed" into
hallucinated text.
"""

from __future__ import annotations

import numpy as np

from ..audio import SAMPLE_RATE

WINDOW_SECONDS = 30.0  # Whisper sees 30 s of audio at a time
WINDOW = int(WINDOW_SECONDS * SAMPLE_RATE)  # 480000 samples
# Cut each long window at the quietest 20 ms frame of its last 6 s: long enough to contain a pause
# between sentences in ordinary speech, short enough that windows stay 80-100 % full.
CUT_SEARCH_SECONDS = 6.0
ENERGY_FRAME = SAMPLE_RATE // 50  # 20 ms frames for the energy used to place cuts and find silence
# A window whose loudest 20 ms frame is below -55 dBFS holds no speech worth decoding: a recording
# of a quiet room sits around -60 to -70 dBFS, whispered speech close to a phone above -45 dBFS.
SILENCE_DBFS = -55.0
# How far a stream's seek moves per window on average: a window's last, unfinished segment is
# decoded again by the next one (measured on the sample corpus' speech: 26-27 s per 30 s window).
ADVANCE_SECONDS = 27.0


def frame_energy_db(audio: np.ndarray) -> np.ndarray:
    """RMS level in dBFS of consecutive 20 ms frames (the last partial frame included)."""
    pad = (-len(audio)) % ENERGY_FRAME
    frames = np.pad(audio, (0, pad)).reshape(-1, ENERGY_FRAME)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-10))


def is_silent(audio: np.ndarray) -> bool:
    """True when no 20 ms frame of the audio reaches SILENCE_DBFS."""
    return audio.size == 0 or float(frame_energy_db(audio).max()) < SILENCE_DBFS


def quietest_cut(energy: np.ndarray, first_frame: int, last_frame: int) -> int:
    """The sample in the middle of the latest quietest frame in [first_frame, last_frame)."""
    span = energy[first_frame:last_frame]
    quietest = last_frame - 1 - int(np.argmin(span[::-1]))  # the latest: windows stay full
    return quietest * ENERGY_FRAME + ENERGY_FRAME // 2


def plan_windows(audio: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive (start, end) sample ranges of at most 30 s, each long one cut at the quietest
    frame of its last CUT_SEARCH_SECONDS."""
    search = int(CUT_SEARCH_SECONDS * SAMPLE_RATE) // ENERGY_FRAME
    energy = frame_energy_db(audio)
    windows, start = [], 0
    while len(audio) - start > WINDOW:
        last_frame = (start + WINDOW) // ENERGY_FRAME  # first frame not fully inside the window
        cut = quietest_cut(energy, last_frame - search, last_frame)
        windows.append((start, cut))
        start = cut
    windows.append((start, len(audio)))
    return windows


def plan_streams(audio: np.ndarray, max_streams: int) -> list[tuple[int, int]]:
    """Cut the audio into contiguous streams for the lockstep seek loop: as few rounds as
    `max_streams` streams allow, and then as few streams as that many rounds need, so that each
    stream is about a whole number of windows long (a stream's last window, decoded alone half
    empty, is the waste to avoid). Each boundary is the quietest frame within 3 s of an even split."""
    windows = max(1, int(np.ceil(len(audio) / SAMPLE_RATE / ADVANCE_SECONDS)))
    rounds = int(np.ceil(windows / max_streams))
    count = max(1, int(np.ceil(windows / rounds)))
    energy = frame_energy_db(audio)
    radius = int(CUT_SEARCH_SECONDS / 2 * SAMPLE_RATE) // ENERGY_FRAME
    cuts = []
    for k in range(1, count):
        middle = k * len(audio) // count // ENERGY_FRAME
        cuts.append(quietest_cut(energy, max(0, middle - radius), middle + radius))
    bounds = [0, *cuts, len(audio)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))
