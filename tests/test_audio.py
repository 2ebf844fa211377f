"""Unit tests for utils.audio: decoding real files of several formats, resampling, bad input."""

import subprocess

import numpy as np
import pytest
import soundfile as sf

from utils.audio import SAMPLE_RATE, AudioError, ffmpeg_exe, load_audio


@pytest.fixture(scope="module")
def clip(sample_corpus):
    return next(iter(sorted((sample_corpus / "sv-SE" / "clips").glob("*.mp3"))))


def test_mp3_48k_decodes_to_mono_16k(clip):
    info = sf.info(clip)
    audio = load_audio(clip)
    assert info.samplerate == 48000
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / SAMPLE_RATE - info.duration) < 0.01
    assert np.abs(audio).max() > 0.01  # speech, not silence


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "m4a"])
def test_other_formats_match_the_mp3(clip, tmp_path, fmt):
    out = tmp_path / f"clip.{fmt}"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(clip), "-ac", "2", str(out)], check=True)
    reference, audio = load_audio(clip), load_audio(out)
    # Lossy codecs shift and pad a little; the length must still agree within 50 ms.
    assert abs(len(audio) - len(reference)) < 0.05 * SAMPLE_RATE
    assert audio.ndim == 1


def test_bytes_input_equals_path_input(clip):
    np.testing.assert_array_equal(load_audio(clip.read_bytes()), load_audio(clip))


def test_stereo_is_averaged(tmp_path):
    left = np.sin(np.linspace(0, 100, 16000)).astype(np.float32)
    sf.write(tmp_path / "s.wav", np.stack([left, np.zeros_like(left)], axis=1), 16000)
    np.testing.assert_allclose(load_audio(tmp_path / "s.wav"), left / 2, atol=1e-4)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "cannot decode|empty"),
        (b"this is not audio" * 50, "cannot decode"),
    ],
)
def test_bad_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.mp3"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioError, match=message) as err:
        load_audio(path)
    assert "bad.mp3" in str(err.value)


def test_truncated_mp3_is_reported_or_decoded_shorter(clip, tmp_path):
    data = clip.read_bytes()
    (tmp_path / "cut.mp3").write_bytes(data[:200])
    try:
        audio = load_audio(tmp_path / "cut.mp3")
    except AudioError as err:
        assert "cut.mp3" in str(err)
    else:
        assert len(audio) < len(load_audio(clip))
