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
# A silence (every 20 ms frame below SILENCE_DBFS) longer than this is shortened to it before
# decoding (TranscribeOptions.max_pause): 0.4 s still reads as a pause to the model, which ends a
# segment there, and read speech can be a third silence (8 minutes of the sample's sentences:
# 180 s silent, 115 s of it cut, 19 windows decoded -> 14; 0.6 s: 0.5 points better WER, 12 %
# slower; benchmarks/RESULTS.md).
MAX_PAUSE_SECONDS = 0.4
# How far a stream's seek moves per window on average: a window's last, unfinished segment is
# decoded again by the next one (measured on the sample corpus' speech: 26-29.5 s per window).
ADVANCE_SECONDS = 27.0
# Spare seconds a stream is planned with: its boundary may move 3 s to a pause, and a stream
# that needs one window more than planned costs a round of its own.
STREAM_MARGIN_SECONDS = 3.0
# A round of the seek loop costs about one window more than its windows (tiny on 2 CPU cores:
# 0.39 s of encoder a window; a decoder step 5.4 ms + 1.6 ms a row, ~115 steps a round).
ROUND_COST = 1


def frame_energy_db(audio: np.ndarray) -> np.ndarray:
    """RMS level in dBFS of consecutive 20 ms frames (the last partial frame included)."""
    pad = (-len(audio)) % ENERGY_FRAME
    frames = np.pad(audio, (0, pad)).reshape(-1, ENERGY_FRAME)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-10))


def is_silent(audio: np.ndarray) -> bool:
    """True when no 20 ms frame of the audio reaches SILENCE_DBFS."""
    return audio.size == 0 or float(frame_energy_db(audio).max()) < SILENCE_DBFS


def sound_regions(audio: np.ndarray, max_pause: float) -> list[tuple[int, int]]:
    """(start, end) sample ranges of `audio` that keep all its sound and of every silence longer
    than `max_pause` seconds only `max_pause` (half at each side, so words are not clipped)."""
    silent = frame_energy_db(audio) < SILENCE_DBFS
    keep = round(max_pause * SAMPLE_RATE / ENERGY_FRAME)  # frames of each long silence kept
    edges = np.diff(np.concatenate([[0], silent.astype(np.int8), [0]]))
    runs = zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True)
    regions, position = [], 0
    for first, stop in runs:  # silent frames [first, stop)
        if stop - first <= keep:
            continue
        cut_from = (first + keep // 2) * ENERGY_FRAME
        if cut_from > position:
            regions.append((position, cut_from))
        position = min((stop - (keep - keep // 2)) * ENERGY_FRAME, len(audio))
    if position < len(audio):
        regions.append((position, len(audio)))
    return regions


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


def windows_needed(seconds: float, margin: float) -> int:
    """Windows the seek loop is expected to decode for a stream this long, with `margin` seconds
    to spare: one if it ends `margin` before the end of its 30 s window (the model closes a last
    segment it hears end; one running into the window's end is decoded again), else one more per
    ADVANCE_SECONDS."""
    if seconds + margin <= WINDOW_SECONDS:
        return 1
    return 1 + int(np.ceil((seconds + margin - WINDOW_SECONDS) / ADVANCE_SECONDS))


def plan_streams(audio: np.ndarray, max_streams: int) -> list[tuple[int, int]]:
    """Cut the audio into at most `max_streams` contiguous streams for the lockstep seek loop,
    as many as cost the least: every window costs a whole encoder pass however little audio it
    holds, and every round about one window more (the decoder's steps are paid once a round,
    whatever its batch), so streams are sized for full last windows (395 s: 15 streams of one
    window, where 16 would decode 16 windows, and 8 streams 16 in two rounds). Each boundary is
    the quietest frame within 3 s of an even split."""
    seconds = len(audio) / SAMPLE_RATE

    def cost(n: int) -> int:  # in windows: n streams of `rounds` windows, and the rounds
        rounds = windows_needed(seconds / n, STREAM_MARGIN_SECONDS if n > 1 else 0.0)
        return n * rounds + ROUND_COST * rounds

    count = min(range(max_streams, 0, -1), key=cost)  # on a tie the most streams
    energy = frame_energy_db(audio)
    radius = int(CUT_SEARCH_SECONDS / 2 * SAMPLE_RATE) // ENERGY_FRAME
    cuts = []
    for k in range(1, count):
        middle = k * len(audio) // count // ENERGY_FRAME
        cuts.append(quietest_cut(energy, max(0, middle - radius), middle + radius))
    bounds = [0, *cuts, len(audio)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))
