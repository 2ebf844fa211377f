"""The compact log-Mel features must equal WhisperFeatureExtractor's within float16 rounding."""

import numpy as np
import pytest
from transformers import WhisperFeatureExtractor

from utils.audio import SAMPLE_RATE, load_audio
from utils.features import N_FRAMES, compact_log_mel, expand_log_mel, kept_frames

TOLERANCE = 2e-3  # float16 keeps 11 significant bits: ~5e-4 absolute error on values near 1


@pytest.fixture(scope="module", params=[80, 128])
def extractor(request):
    return WhisperFeatureExtractor(feature_size=request.param)


@pytest.fixture(scope="module")
def speech(sample_corpus):
    clips = sorted((sample_corpus / "it" / "clips").glob("*.mp3"))
    return [load_audio(c) for c in clips]


def reference(extractor, audio):
    return extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features[0]


def check(extractor, audio):
    frames, pad_value = compact_log_mel(audio, extractor)
    assert frames.dtype == np.float16 and frames.shape == (
        extractor.feature_size,
        kept_frames(len(audio)),
    )
    full = expand_log_mel(frames, pad_value)
    assert full.shape == (extractor.feature_size, N_FRAMES)
    assert np.abs(full - reference(extractor, audio)).max() < TOLERANCE
    return frames


def test_short_speech_clip(extractor, speech):
    frames = check(extractor, speech[0])
    assert frames.shape[1] < 400  # a ~3 s clip keeps about a tenth of the window


def test_long_clip_of_about_30_seconds(extractor, speech):
    long = np.concatenate(speech)[: 30 * SAMPLE_RATE - 123]
    assert len(long) > 29 * SAMPLE_RATE
    check(extractor, long)


def test_clip_over_30_seconds_is_truncated_like_the_extractor(extractor, speech):
    check(extractor, np.concatenate(speech + speech)[: 31 * SAMPLE_RATE])


@pytest.mark.parametrize("n", [0, 1, 160, 401, 8000])
def test_silent_clips(extractor, n):
    check(extractor, np.zeros(max(n, 1), dtype=np.float32))


@pytest.mark.parametrize("n", [1, 37, 199, 200, 201, 400])
def test_very_short_clips(extractor, speech, n):
    check(extractor, speech[1][4000 : 4000 + n])


def test_pad_value_matches_design_rule(extractor, speech):
    """Padding frames equal max(clip max - 2, -1.5) after normalisation (DESIGN.md)."""
    frames, pad_value = compact_log_mel(speech[2], extractor)
    assert pad_value == pytest.approx(max(float(frames.max()) - 2.0, -1.5), abs=TOLERANCE)


def test_extractor_still_saves_after_compact_features(tmp_path, speech):
    # Computing compact features used to leave a torch tensor on the extractor, and its
    # save_pretrained() then failed with "Tensor is not JSON serializable".
    extractor = WhisperFeatureExtractor(feature_size=80)
    compact_log_mel(speech[0], extractor)
    extractor.save_pretrained(tmp_path)
    assert WhisperFeatureExtractor.from_pretrained(tmp_path).feature_size == 80


def test_expand_into_a_given_row(speech):
    extractor = WhisperFeatureExtractor(feature_size=80)
    frames, pad_value = compact_log_mel(speech[0], extractor)
    batch = np.zeros((2, 80, N_FRAMES), dtype=np.float32)
    expand_log_mel(frames, pad_value, out=batch[1])
    np.testing.assert_array_equal(batch[1], expand_log_mel(frames, pad_value))
    assert not batch[0].any()
