"""Decode any audio file to the mono 16 kHz float32 waveform Whisper expects.

soundfile (libsndfile >= 1.1) decodes wav, flac, ogg/opus and mp3 in-process, which is what Common
Voice ships; anything else (m4a, webm, video containers) goes through an ffmpeg subprocess.
Resampling uses soxr, the same high-quality resampler librosa uses by default, only called directly.
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

SAMPLE_RATE = 16000  # Whisper's models are trained on 16 kHz audio


class AudioError(ValueError):
    """An input that cannot be turned into audio; the message names the file."""


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


def _decode_soundfile(src: str | Path | bytes) -> tuple[np.ndarray, int]:
    handle = io.BytesIO(src) if isinstance(src, bytes) else src
    audio, sr = sf.read(handle, dtype="float32", always_2d=False)
    return to_mono(audio), sr


def _decode_ffmpeg(src: str | Path | bytes, sr: int) -> np.ndarray:
    # ffmpeg does the downmix and resampling itself; raw float32 little-endian on stdout.
    cmd = [
        ffmpeg_exe(),
        "-nostdin",
        "-v",
        "error",
        "-i",
        "pipe:0" if isinstance(src, bytes) else str(src),
    ]
    cmd += ["-vn", "-ac", "1", "-ar", str(sr), "-f", "f32le", "pipe:1"]
    proc = subprocess.run(cmd, input=src if isinstance(src, bytes) else None, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(
            proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or "ffmpeg failed"
        )
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def load_audio(
    src: str | Path | bytes, sr: int = SAMPLE_RATE, name: str | None = None
) -> np.ndarray:
    """Decode a file path or encoded bytes to a mono float32 waveform at `sr` Hz.

    Raises AudioError naming the file (or `name`, for bytes) when it is missing, unreadable,
    not audio, or holds no samples.
    """
    label = name or (f"<{len(src)} bytes>" if isinstance(src, bytes) else str(src))
    if not isinstance(src, bytes) and not os.path.isfile(src):
        raise AudioError(f"{label}: no such file")
    if isinstance(src, bytes) and not src:
        raise AudioError(f"{label}: empty file")
    try:
        audio, orig_sr = _decode_soundfile(src)
        audio = resample(audio, orig_sr, sr)
    except Exception:  # not a format libsndfile knows (or a damaged one): let ffmpeg try
        try:
            audio = _decode_ffmpeg(src, sr)
        except Exception as err:
            raise AudioError(f"{label}: cannot decode audio ({err})") from err
    if audio.size == 0:
        raise AudioError(f"{label}: the file holds no audio samples")
    if not np.isfinite(audio).all():
        raise AudioError(f"{label}: the audio holds NaN or infinite samples")
    return np.ascontiguousarray(audio, dtype=np.float32)
