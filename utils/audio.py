"""Decode any audio file to the mono 16 kHz float32 waveform Whisper expects, within a time cap.

soundfile (libsndfile >= 1.1) decodes wav, flac, ogg/opus and mp3 in-process, which is what Common
Voice ships; anything else (m4a, webm, video containers, or a file libsndfile refuses) goes
through an ffmpeg subprocess. Resampling uses soxr, the same resampler librosa uses by default.

Every decoder is capped by duration *before* it decodes: libsndfile reads at most `max_seconds`
(+1) worth of frames, and ffmpeg gets `-t`. A file whose header claims 1 s but that holds hours
(a decode bomb) therefore costs no more than the cap in time and memory, whoever sent it.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError, TooLongError

SAMPLE_RATE = 16000  # Whisper's models are trained on 16 kHz audio
# Decode at most this much audio when the caller sets no cap: four hours of 16 kHz float32 is
# 0.9 GB, the most one request may hold in memory.
DEFAULT_MAX_SECONDS = 4 * 3600.0
# Read this much past the cap, so "longer than the cap" is seen without decoding the rest.
OVER_CAP_SECONDS = 1.0


def ffmpeg_exe() -> str:
    """Return an ffmpeg binary: the system's, else the one bundled by imageio-ffmpeg."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError as err:  # pragma: no cover - depends on the machine
        raise AudioError(
            "ffmpeg not found: install it (apt) or `pip install imageio-ffmpeg`"
        ) from err
    return imageio_ffmpeg.get_ffmpeg_exe()


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average channels; soundfile returns (frames, channels)."""
    return audio.mean(axis=1) if audio.ndim == 2 else audio


def resample(audio: np.ndarray, orig_sr: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a mono float waveform from orig_sr to sr (no-op when they match)."""
    if orig_sr == sr:
        return audio.astype(np.float32, copy=False)
    return soxr.resample(audio, orig_sr, sr, quality="HQ").astype(np.float32, copy=False)


def _decode_soundfile(src: str | Path | bytes, max_seconds: float) -> tuple[np.ndarray, int]:
    handle = io.BytesIO(src) if isinstance(src, bytes) else src
    with sf.SoundFile(handle) as f:
        frames = int((max_seconds + OVER_CAP_SECONDS) * f.samplerate)
        audio = f.read(frames=frames, dtype="float32", always_2d=False)
        return to_mono(audio), f.samplerate


def _decode_ffmpeg(src: str | Path | bytes, sr: int, max_seconds: float) -> np.ndarray:
    # ffmpeg downmixes and resamples itself; -t stops it after the cap, whatever the file claims.
    cmd = [ffmpeg_exe(), "-nostdin", "-v", "error"]
    cmd += ["-i", "pipe:0" if isinstance(src, bytes) else str(src)]
    cmd += ["-t", f"{max_seconds + OVER_CAP_SECONDS:.3f}", "-vn", "-ac", "1", "-ar", str(sr)]
    cmd += ["-f", "f32le", "pipe:1"]
    proc = subprocess.run(cmd, input=src if isinstance(src, bytes) else None, capture_output=True)
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        reason = lines[-1] if lines else f"ffmpeg exited with {proc.returncode}"
        # ffmpeg names the input by its path: the caller's label says which file it is.
        raise AudioError(
            reason.replace(str(src) + ": ", "") if not isinstance(src, bytes) else reason
        )
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def load_audio(
    src: str | Path | bytes,
    sr: int = SAMPLE_RATE,
    name: str | None = None,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
) -> np.ndarray:
    """Decode a file path or encoded bytes to a mono float32 waveform at `sr` Hz.

    Raises AudioError naming the file (or `name`, for bytes) when it is missing, unreadable, not
    audio, or holds no samples, and TooLongError (an AudioError) when it holds more than
    `max_seconds` of audio; no more than that is ever decoded (None: DEFAULT_MAX_SECONDS).
    """
    cap = DEFAULT_MAX_SECONDS if max_seconds is None else float(max_seconds)
    label = name or (f"<{len(src)} bytes>" if isinstance(src, bytes) else str(src))
    if not isinstance(src, bytes) and not os.path.isfile(src):
        raise AudioError(f"{label}: no such file")
    if isinstance(src, bytes) and not src:
        raise AudioError(f"{label}: empty file")
    try:
        audio, orig_sr = _decode_soundfile(src, cap)
        audio = resample(audio, orig_sr, sr)
    except Exception:  # noqa: BLE001 - not a format libsndfile knows (or damaged): ask ffmpeg
        try:
            audio = _decode_ffmpeg(src, sr, cap)
        except AudioError as err:
            raise AudioError(f"{label}: cannot decode audio ({err})") from None
    if audio.size == 0:
        raise AudioError(f"{label}: the file holds no audio samples")
    if len(audio) > cap * sr:
        raise TooLongError(
            f"{label}: more than {format_duration(cap)} of audio, the limit",
            seconds=len(audio) / sr,
        )
    if not np.isfinite(audio).all():
        raise AudioError(f"{label}: the audio holds NaN or infinite samples")
    return np.ascontiguousarray(audio, dtype=np.float32)


def format_duration(seconds: float) -> str:
    """Human duration for messages: '1 h 02 min 05 s', '3 min 20 s', '4.2 s'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = int(round(seconds))
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h} h {m:02d} min {s:02d} s" if h else f"{m} min {s:02d} s"
