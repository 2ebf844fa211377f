"""Long-form transcription on real weights (OpenAI's tiny.en): a few minutes of known sentences
with known pauses, transcribed by both backends with the default strategy (streams of Whisper's
seek loop in lockstep): the text against the sentences, segments and words against the audio."""

from __future__ import annotations

import csv

import jiwer
import numpy as np
import pytest
from transformers.models.whisper.english_normalizer import BasicTextNormalizer

from utils.audio import SAMPLE_RATE, load_audio
from utils.transcribe import (
    TranscribeOptions,
    Transcriber,
    export_ctranslate2,
    plan_streams,
    to_srt,
    to_vtt,
)
from utils.transcribe.decoding import cut_repetitions

from .test_transcription import assert_increasing, parse_srt, parse_vtt

PAUSES = (0.4, 1.4)  # seconds of silence between sentences, drawn uniformly
MINUTES = 3.0


@pytest.fixture(scope="module")
def recording(sample_corpus):
    """(audio, sentences, their (start, end) times): English sample clips joined by pauses."""
    rng = np.random.default_rng(7)
    parts, sentences, times, t = [], [], [], 0.0
    # unseen.tsv's rare words are what zero-shot tiny.en gets wrong most (77 % WER): left out here
    for split in ("test", "dev", "train"):
        with open(sample_corpus / "en" / f"{split}.tsv", encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                audio = load_audio(sample_corpus / "en" / "clips" / row["path"])
                pause = np.zeros(int(rng.uniform(*PAUSES) * SAMPLE_RATE), np.float32)
                parts += [audio, pause]
                sentences.append(row["sentence"])
                times.append((t, t + len(audio) / SAMPLE_RATE))
                t += (len(audio) + len(pause)) / SAMPLE_RATE
                if t > MINUTES * 60:
                    return np.concatenate(parts), sentences, times
    return np.concatenate(parts), sentences, times


@pytest.fixture(scope="module")
def results(tiny_en, recording, tmp_path_factory):
    export = export_ctranslate2(tiny_en, tmp_path_factory.mktemp("ct2") / "tiny-en")
    options = TranscribeOptions(word_timestamps=True, batch_size=4)
    audio = recording[0]
    return {
        "transformers": Transcriber(tiny_en, options, backend="transformers").transcribe(audio),
        "ctranslate2": Transcriber(export, options, backend="ctranslate2").transcribe(audio),
    }


def test_streams_cover_the_recording(recording):
    audio = recording[0]
    bounds = plan_streams(audio, 4)
    assert len(bounds) > 1 and bounds[0][0] == 0 and bounds[-1][1] == len(audio)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))


@pytest.mark.parametrize("backend", ["transformers", "ctranslate2"])
def test_text_matches_the_sentences(results, recording, backend):
    normalize = BasicTextNormalizer()
    result = results[backend]
    wer = jiwer.wer(normalize(" ".join(recording[1])), normalize(result.text))
    print(
        f"{backend}: {len(recording[1])} sentences, {result.duration:.0f} s, WER {100 * wer:.1f} %, {result.info}"
    )
    assert wer < 0.2 and result.language == "en"
    assert result.info["streams"] > 1 and result.info["strategy"] == "streams"
    # the pauses were shortened before decoding (the times above are the recording's own)
    assert result.info["decoded_seconds"] < 0.9 * result.duration


def test_both_backends_decode_the_same(results):
    a, b = results["transformers"], results["ctranslate2"]
    assert a.text == b.text
    # the same timestamp tokens; a segment that ends without a closing timestamp ends with its
    # last word, which each backend aligns from its own cross-attention
    assert len(a.segments) == len(b.segments)
    # (and the next segment starts no earlier than that)
    pairs = list(zip(a.segments, b.segments, strict=True))
    shifts = np.array([max(abs(x.start - y.start), abs(x.end - y.end)) for x, y in pairs])
    assert shifts.max() <= 0.6 and np.mean(shifts <= 0.1) >= 0.9, shifts


@pytest.mark.parametrize("backend", ["transformers", "ctranslate2"])
def test_segments_leave_no_gap_longer_than_a_pause(results, recording, backend):
    result, times = results[backend], recording[2]
    segments = [(s.start, s.end, s.text) for s in result.segments]
    assert_increasing(segments, result.duration)
    longest_pause = max(b[0] - a[1] for a, b in zip(times, times[1:], strict=False))
    gaps = [b[0] - a[1] for a, b in zip(segments, segments[1:], strict=False)]
    # a window whose model stopped early is decoded again from there: no 3-5 s holes
    assert max(gaps) <= longest_pause + 1.0, max(gaps)
    assert segments[0][0] <= times[0][0] + 1.0 and segments[-1][1] >= times[-1][1] - 2.0
    # segments start where sentences start (timestamps that mean something)
    starts = np.array([t[0] for t in times])
    near = [np.abs(starts - s[0]).min() <= 1.0 for s in segments]
    assert np.mean(near) >= 0.8


@pytest.mark.parametrize("backend", ["transformers", "ctranslate2"])
def test_word_timestamps_increase_and_fall_inside_their_segment(results, backend):
    result = results[backend]
    words = [w for s in result.segments for w in s.words]
    assert len(words) > 0.8 * len(result.text.split())
    last = 0.0
    for segment in result.segments:
        for w in segment.words:
            assert segment.start <= w.start <= w.end <= segment.end
            assert w.start >= last
            last = w.end
    # word-by-word subtitles parse and increase
    assert_increasing(parse_srt(to_srt(result, words=True)), result.duration)
    assert_increasing(parse_vtt(to_vtt(result, words=True)), result.duration)


def test_a_repetition_loop_is_cut(tiny_en):
    transcriber = Transcriber(tiny_en, TranscribeOptions(max_new_tokens=8))
    vocab = transcriber.backend.vocab
    tokenizer = transcriber.backend.processor.tokenizer
    loop = tokenizer.encode(" and", add_special_tokens=False) * 30  # "and and and ..."
    start = [vocab.timestamp_begin]
    tokens, cut = cut_repetitions(
        start + tokenizer.encode(" I said", add_special_tokens=False) + loop, vocab
    )
    assert cut and vocab.decode(vocab.text_tokens(tokens)).strip() == "I said and and and"
    phrase = tokenizer.encode(" thank you very much", add_special_tokens=False)
    tokens, cut = cut_repetitions(start + phrase * 10, vocab)
    assert cut and vocab.decode(vocab.text_tokens(tokens)).count("thank you") == 3
    speech = tokenizer.encode(" no, no, no, I did not", add_special_tokens=False)
    assert cut_repetitions(start + speech, vocab) == (start + speech, False)  # speech is kept


def test_voice_activity_filter_maps_times_back(tiny_en, recording):
    audio, sentences, times = recording
    # 20 s of quiet noise before the first 10 sentences: decoded only where there is speech
    noise = np.random.default_rng(0).normal(0, 0.003, 20 * SAMPLE_RATE).astype(np.float32)
    end = int(times[9][1] * SAMPLE_RATE) + SAMPLE_RATE // 2
    padded = np.concatenate([noise, audio[:end]])
    result = Transcriber(tiny_en, TranscribeOptions(vad_filter=True)).transcribe(padded)
    assert result.segments[0].start >= 19.0  # nothing "heard" in the noise
    assert abs(result.segments[0].start - (20.0 + times[0][0])) <= 1.0
    normalize = BasicTextNormalizer()
    assert jiwer.wer(normalize(" ".join(sentences[:10])), normalize(result.text)) < 0.3
