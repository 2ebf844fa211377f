"""Unit tests for utils.audio: decoding real files of several formats, resampling, bad input."""

import json
import subprocess
import sys

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


def test_ffmpeg_failure_message_is_plain_text(tmp_path):
    path = tmp_path / "noise.ogg"
    path.write_bytes(b"OggS" + bytes(range(256)) * 8)  # looks like Ogg, is not: both decoders fail
    with pytest.raises(AudioError) as err:
        load_audio(path)
    message = str(err.value)
    assert message.startswith("noise.ogg: cannot decode audio (") or "noise.ogg" in message
    assert "['" not in message and "[]" not in message  # no Python list in what the user reads


def _flac_bomb(tmp_path, minutes: float) -> "Path":  # noqa: F821
    """A FLAC holding `minutes` of sound whose header claims 1 s and whose first frame is damaged:
    libsndfile refuses it, so the ffmpeg fallback is what must stop at the cap."""
    path = tmp_path / "bomb.flac"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono"]
        + ["-t", str(minutes * 60), "-compression_level", "8", str(path)],
        check=True,
    )
    data = bytearray(path.read_bytes())
    # STREAMINFO (right after "fLaC" + 4-byte block header) ends with 36 bits of total samples.
    info = 8
    total = 16000  # 1 s
    packed = int.from_bytes(data[info + 13 : info + 18], "big")
    packed = (packed & ~((1 << 36) - 1)) | total
    data[info + 13 : info + 18] = packed.to_bytes(5, "big")
    first_frame = data.index(b"\xff\xf8", info + 34)
    data[first_frame + 6 : first_frame + 40] = bytes(34)  # damage the first frame
    path.write_bytes(bytes(data))
    return path


def test_a_decode_bomb_is_stopped_at_the_cap(tmp_path, repo_root):
    bomb = _flac_bomb(tmp_path, minutes=20)
    assert bomb.stat().st_size < 1_000_000  # a small file...
    # ...decoded in a fresh interpreter, so that its peak memory and its ffmpeg child's are its own
    probe = (
        "import json, resource, sys, time\n"
        "from utils.audio import load_audio\n"
        "from utils.errors import TooLongError\n"
        "start = time.perf_counter()\n"
        "try:\n"
        "    load_audio(sys.argv[1], max_seconds=30)\n"
        "    out = {'error': None}\n"
        "except TooLongError as err:\n"
        "    out = {'error': str(err), 'seconds': err.seconds}\n"
        "out['took'] = time.perf_counter() - start\n"
        # VmHWM, not getrusage: at exec the kernel carries the spawning process's peak (pytest's,
        # grown by earlier tests) into RUSAGE_SELF; VmHWM is this interpreter's memory alone
        "out['self_kb'] = int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])\n"
        "out['child_kb'] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps(out))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe, str(bomb)], cwd=repo_root, capture_output=True, text=True
    )
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["error"].startswith(f"{bomb}: more than 30.0 s of audio") and out["seconds"] > 30
    assert out["took"] < 10
    # 20 minutes of float32 samples would be 77 MB in ffmpeg's pipe and 77 MB here: neither held it.
    assert out["child_kb"] < 100_000 and out["self_kb"] < 400_000


def test_soundfile_reads_no_more_than_the_cap(tmp_path):
    from utils.errors import TooLongError

    sf.write(tmp_path / "long.wav", np.zeros(16000 * 120, dtype=np.float32) + 0.1, 16000)
    with pytest.raises(TooLongError):
        load_audio(tmp_path / "long.wav", max_seconds=60)
    assert len(load_audio(tmp_path / "long.wav", max_seconds=120)) == 16000 * 120
