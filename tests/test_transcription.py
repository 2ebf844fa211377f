"""Transcriber structure on the tiny random Whisper (windows, segments, timestamps, files, errors,
the CLI), subtitle writers, CTranslate2 export. What depends on the weights (accuracy, word times,
the long-form algorithm, both backends agreeing) is tested on the real tiny.en in
tests/test_longform.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from utils.audio import SAMPLE_RATE, AudioError, load_audio
from utils.errors import ConfigError
from utils.transcribe import (
    WINDOW_SECONDS,
    NoSpeechError,
    Segment,
    TranscribeOptions,
    Transcriber,
    Transcript,
    clean_segments,
    export_ctranslate2,
    frame_energy_db,
    plan_streams,
    plan_windows,
    to_srt,
    to_txt,
    to_vtt,
)
from utils.transcribe.longform import split_segments
from utils.transcribe.vad import intersect, join
from utils.transcribe.windows import STREAM_MARGIN_SECONDS, sound_regions
from utils.whisper_lang import language_code

REPO = Path(__file__).resolve().parent.parent
# Random weights never emit end-of-text: a few tokens per window keep every decode short, and
# independent windows ("windows") over the whole audio (no pause shortened) keep their count
# known (random timestamps would steer a seek).
FAST = {
    "max_new_tokens": 8,
    "cpu_threads": 1,
    "strategy": "windows",
    "temperatures": (0.0,),
    "max_pause": None,
}

SRT_TIME = r"(\d{2}):(\d{2}):(\d{2}),(\d{3})"
VTT_TIME = r"(\d{2}):(\d{2}):(\d{2})\.(\d{3})"


def _seconds(h, m, s, ms) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    """Parse SubRip strictly: numbered cues 1..n, a time line, text, blank line between."""
    cues = []
    for i, block in enumerate(text.strip().split("\n\n"), start=1):
        lines = block.split("\n")
        assert lines[0] == str(i), f"cue number {lines[0]!r}, expected {i}"
        m = re.fullmatch(f"{SRT_TIME} --> {SRT_TIME}", lines[1])
        assert m, f"bad SRT time line {lines[1]!r}"
        assert len(lines) >= 3 and lines[2].strip(), "empty cue"
        cues.append((_seconds(*m.groups()[:4]), _seconds(*m.groups()[4:]), "\n".join(lines[2:])))
    return cues


def parse_vtt(text: str) -> list[tuple[float, float, str]]:
    """Parse WebVTT: a WEBVTT header, then cues of a time line and text."""
    blocks = text.strip().split("\n\n")
    assert blocks[0] == "WEBVTT"
    cues = []
    for block in blocks[1:]:
        lines = block.split("\n")
        m = re.fullmatch(f"{VTT_TIME} --> {VTT_TIME}", lines[0])
        assert m, f"bad VTT time line {lines[0]!r}"
        assert len(lines) >= 2 and lines[1].strip() and "-->" not in lines[1]
        cues.append((_seconds(*m.groups()[:4]), _seconds(*m.groups()[4:]), "\n".join(lines[1:])))
    return cues


def assert_increasing(cues, duration: float | None = None):
    """Every cue starts where or after the previous one ended and ends after it starts."""
    assert cues, "no cues"
    prev_end = 0.0
    for start, end, _ in cues:
        assert prev_end <= start < end, (prev_end, start, end)
        prev_end = end
    if duration is not None:
        assert prev_end <= duration + 0.05


@pytest.fixture(scope="module")
def clips(sample_corpus) -> list[Path]:
    return sorted((sample_corpus / "sv-SE" / "clips").glob("*.mp3"))


@pytest.fixture(scope="module")
def long_audio(clips) -> np.ndarray:
    """~70 s of speech: sample clips with 0.4 s pauses, so it needs three windows."""
    parts = []
    for clip in clips[:22]:
        parts += [load_audio(clip), np.zeros(int(0.4 * SAMPLE_RATE), np.float32)]
    audio = np.concatenate(parts)
    assert len(audio) > 2 * WINDOW_SECONDS * SAMPLE_RATE
    return audio


@pytest.fixture(scope="module")
def transcriber(tiny_whisper) -> Transcriber:
    return Transcriber(tiny_whisper, TranscribeOptions(backend="transformers", **FAST))


def test_windows_cover_audio_and_cut_in_pauses(long_audio):
    windows = plan_windows(long_audio)
    assert windows[0][0] == 0 and windows[-1][1] == len(long_audio)
    for (_s1, e1), (s2, _) in zip(windows, windows[1:], strict=False):
        assert e1 == s2  # contiguous: nothing lost, nothing decoded twice
    energy = frame_energy_db(long_audio)
    for s, e in windows:
        assert 0 < e - s <= WINDOW_SECONDS * SAMPLE_RATE
    for _, cut in windows[:-1]:
        # every cut sits in a pause (digital silence here), not inside a clip
        assert energy[cut // 320] < -100
        assert cut - windows[0][0] > 0


def _tone(seconds: float, level: float = 0.1) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (level * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_long_silences_are_shortened_and_times_map_back():
    # sound, then silences of 0.3 s (kept whole), 2 s and 10 s (cut to 0.4 s), and a quiet
    # -60 dBFS hum that is no louder than a silent room
    pieces = [_tone(1.0), np.zeros(int(0.3 * SAMPLE_RATE), np.float32), _tone(0.5)]
    pieces += [np.zeros(2 * SAMPLE_RATE, np.float32), _tone(0.7)]
    pieces += [_tone(10.0, level=0.001), _tone(0.2)]
    audio = np.concatenate(pieces)
    regions = sound_regions(audio, 0.4)
    joined, speech_map = join(audio, regions)
    assert len(joined) == pytest.approx(len(audio) - (1.6 + 9.6) * SAMPLE_RATE, abs=2 * 320)
    # every loud sample is kept, in order
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    kept = np.zeros(len(audio), bool)
    for start, end in regions:
        kept[start:end] = True
    assert kept[loud].all()
    assert np.array_equal(joined[np.abs(joined) > 0.01], audio[loud])
    # the third tone starts 0.2 s into the joined audio's 0.4 s pause after the second one
    third_joined = 1.0 + 0.3 + 0.5 + 0.4
    assert speech_map.original_time(third_joined) == pytest.approx(1.0 + 0.3 + 0.5 + 2.0, abs=0.02)
    # a time where two kept parts meet: the start of the later one, or the end of the earlier one
    join_at = (regions[0][1] - regions[0][0]) / SAMPLE_RATE
    assert speech_map.original_time(join_at) == pytest.approx(regions[1][0] / SAMPLE_RATE)
    assert speech_map.original_time(join_at, end=True) == pytest.approx(regions[0][1] / SAMPLE_RATE)
    # Silero's regions and these combine: only what is in both is decoded
    assert intersect([(0, 10), (20, 30)], [(5, 25)]) == [(5, 10), (20, 25)]
    assert intersect([(0, 10)], []) == []


@pytest.mark.parametrize(
    ("seconds", "most", "streams", "rounds"),
    [(25, 16, 1, 1), (395, 16, 15, 1), (395, 8, 8, 2), (760, 16, 15, 2), (100, 1, 1, 4)],
)
def test_streams_are_planned_for_full_windows_in_few_rounds(seconds, most, streams, rounds):
    # speech-like: 3 s of sound, then 0.4 s of silence, over and over
    unit = np.concatenate([_tone(3.0), np.zeros(int(0.4 * SAMPLE_RATE), np.float32)])
    audio = np.tile(unit, int(seconds / 3.4) + 1)[: seconds * SAMPLE_RATE]
    bounds = plan_streams(audio, most)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(audio) and len(bounds) == streams
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    longest = max(e - s for s, e in bounds) / SAMPLE_RATE
    if rounds == 1:  # each stream fits one window, with room for the model to hear it end
        assert longest <= WINDOW_SECONDS - STREAM_MARGIN_SECONDS + 3.0
    else:  # the same number of windows for each stream: no stream holds up a round alone
        assert longest - min(e - s for s, e in bounds) / SAMPLE_RATE <= 6.5


def test_split_segments_and_cleaning(tiny_whisper):
    vocab = Transcriber(tiny_whisper, TranscribeOptions(**FAST)).backend.vocab
    tb = vocab.timestamp_begin
    window = 4 * 16000
    # <|0.00|> a b <|1.00|><|1.00|> c <|2.50|> d   (d: cut off before its closing timestamp)
    tokens = [tb + 0, 1, 2, tb + 50, tb + 50, 3, tb + 125, 4]
    segments, advance, single_end = split_segments(tokens, vocab, 10.0, window)
    assert [(s.start, s.end) for s in segments] == [(10.0, 11.0)]
    assert advance == 50 * 320 and not single_end  # seek to the last closed timestamp: 1.00 s
    # ending on a single timestamp: nothing more said in the window, seek past all of it
    tokens = [tb + 0, 1, tb + 50, tb + 50, 3, tb + 125]
    segments, advance, single_end = split_segments(tokens, vocab, 0.0, window)
    assert [(s.start, s.end) for s in segments] == [(0.0, 1.0), (1.0, 2.5)] and single_end
    assert advance == window
    # no closed pair at all: the window is one segment, the seek moves past it
    segments, advance, _ = split_segments([tb, 1, 2], vocab, 0.0, window)
    assert [(s.start, s.end, s.tokens) for s in segments] == [
        (0.0, 4.0, [tb, 1, 2])
    ] and advance == window
    # cleaning: empty text dropped, overlaps pushed forward, zero-length cues get 20 ms
    cleaned = clean_segments([(0, 2, " a "), (1, 1.5, "b"), (3, 3, "  "), (3, 3, "c")])
    assert cleaned == [Segment(0, 2, "a"), Segment(2, 2.02, "b"), Segment(3, 3.02, "c")]
    # nothing past the audio's end: a segment starting there joins the previous one
    cleaned = clean_segments([(0, 2, "a"), (2.5, 9, "b"), (7, 8, "c")], duration=4.0)
    assert cleaned == [Segment(0, 2, "a"), Segment(2.5, 4.0, "b c")]


def test_writers_format_exactly():
    t = Transcript(
        text="Hej då. --> ok",
        segments=[Segment(0.0, 1.5, "Hej då."), Segment(61.25, 3723.004, "--> ok")],
        language="sv",
    )
    assert to_txt(t) == "Hej då.\n--> ok\n"
    assert to_srt(t) == (
        "1\n00:00:00,000 --> 00:00:01,500\nHej då.\n\n2\n00:01:01,250 --> 01:02:03,004\n--> ok\n"
    )
    vtt = to_vtt(t)
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHej då.\n")
    assert parse_vtt(vtt)[1] == (61.25, 3723.004, "-> ok")  # "-->" is not allowed in a cue
    assert_increasing(parse_srt(to_srt(t)))


def test_long_form_transcription(transcriber, long_audio):
    result = transcriber.transcribe(long_audio, language="sv")
    duration = len(long_audio) / SAMPLE_RATE
    assert result.language == "sv" and result.duration == pytest.approx(duration)
    assert result.info["windows"] == 3 and result.info["backend"] == "transformers"
    assert isinstance(result.text, str) and result.text
    assert all(isinstance(s.text, str) and s.text for s in result.segments)
    # all three windows produced segments, on one monotonic timeline within the audio
    assert result.segments[-1].start >= 2 * 25.0
    assert_increasing([(s.start, s.end, s.text) for s in result.segments], duration)
    assert_increasing(parse_srt(to_srt(result)), duration)
    assert_increasing(parse_vtt(to_vtt(result)), duration)


def test_detect_translate_and_no_timestamps(transcriber, clips):
    audio = load_audio(clips[0])
    detected = transcriber.transcribe(audio)
    assert detected.language in transcriber.backend.languages()
    plain = transcriber.transcribe(audio, language="swedish", task="translate", timestamps=False)
    assert plain.language == "sv" and plain.task == "translate"
    # without timestamps each window is one segment spanning the window
    assert [(s.start, s.end) for s in plain.segments] == [(0.0, round(len(audio) / SAMPLE_RATE, 3))]


def test_sequential_strategy(transcriber, long_audio):
    result = transcriber.transcribe(long_audio, language="sv", strategy="sequential")
    assert result.info["strategy"] == "sequential" and result.segments
    assert result.info["streams"] == 1 and result.info["rounds"] == result.info["windows"] >= 3
    assert_increasing(
        [(s.start, s.end, s.text) for s in result.segments], len(long_audio) / SAMPLE_RATE
    )


def test_bad_input_messages(transcriber, tmp_path):
    silent = tmp_path / "quiet-room.wav"
    sf.write(silent, np.random.default_rng(0).normal(0, 1e-4, 3 * SAMPLE_RATE), SAMPLE_RATE)
    with pytest.raises(NoSpeechError, match="quiet-room.wav: the audio holds only silence"):
        transcriber.transcribe(silent)
    # the default path too, where long silences are cut before decoding (down to nothing here)
    for audio in (silent, np.zeros(0, np.float32)):
        with pytest.raises(NoSpeechError, match="the audio holds only silence"):
            transcriber.transcribe(audio, max_pause=0.4)
    with pytest.raises(ConfigError, match=r"TranscribeOptions.max_pause=0.01 is not valid"):
        transcriber.transcribe(silent, max_pause=0.01)
    long = np.full(5 * SAMPLE_RATE, 0.1, np.float32)
    with pytest.raises(AudioError, match="talk: 5.0 s of audio is over the limit of 4.0 s"):
        transcriber.transcribe(long, name="talk", max_duration=4.0)
    notes = tmp_path / "notes.mp3"
    notes.write_text("not audio at all\n" * 50)
    with pytest.raises(AudioError, match="notes.mp3: cannot decode audio"):
        transcriber.transcribe(notes)
    with pytest.raises(ValueError, match="language='klingon' is not a Whisper language"):
        transcriber.transcribe(long, language="klingon")
    with pytest.raises(ValueError, match=r"TranscribeOptions.task='summarize'"):
        TranscribeOptions(task="summarize")
    with pytest.raises(ValueError, match=r"TranscribeOptions.max_new_tokens=500"):
        TranscribeOptions(max_new_tokens=500)
    with pytest.raises(ValueError, match=r"\['backend'\] are fixed"):
        transcriber.transcribe(long, backend="ctranslate2")
    assert language_code("<|SV|>") == language_code("Swedish") == "sv"
    assert language_code("auto") is None


def test_ctranslate2_export_decodes_the_same_tokens(tiny_whisper, tmp_path, long_audio):
    """export_ctranslate2 on a transformers 5 checkpoint; faster-whisper's engine then decodes
    exactly the tokens transformers decodes, on the same windows."""
    export = export_ctranslate2(tiny_whisper, tmp_path / "model-ct2")
    for name in ("model.bin", "config.json", "tokenizer.json", "preprocessor_config.json"):
        assert (export / name).is_file(), name
    assert export_ctranslate2(tiny_whisper, export) == export  # already there: reused

    opts = TranscribeOptions(language="sv", **FAST)
    hf = Transcriber(tiny_whisper, opts, backend="transformers")
    ct2 = Transcriber(export, opts)  # "auto" picks the export
    assert ct2.backend.name == "ctranslate2"
    chunks = [long_audio[s:e] for s, e in plan_windows(long_audio)]
    rows = list(range(len(chunks)))
    prompts = [hf.backend.vocab.prompt([], "sv", "transcribe")] * len(chunks)
    a = hf.backend.generate(hf.backend.encode(chunks), rows, prompts, 0.0, FAST["max_new_tokens"])
    b = ct2.backend.generate(ct2.backend.encode(chunks), rows, prompts, 0.0, FAST["max_new_tokens"])
    assert [x[0] for x in a] == [y[0] for y in b]  # the same tokens
    assert all(len(y[0]) == FAST["max_new_tokens"] for y in b)
    # a batch mixing rows with and without previous text (a stream reset after a doubtful
    # window): CTranslate2 wants one prompt length a call, and each row decodes as it would alone
    encoded = ct2.backend.encode(chunks)
    mixed = [hf.backend.vocab.prompt([1000, 2000, 3000], "sv", "transcribe"), *prompts[1:]]
    together = ct2.backend.generate(encoded, rows, mixed, 0.0, FAST["max_new_tokens"])
    alone = [
        ct2.backend.generate(encoded, [r], [mixed[r]], 0.0, FAST["max_new_tokens"])[0] for r in rows
    ]
    assert [x[0] for x in together] == [x[0] for x in alone]
    # language detection reads the encoder output the CTranslate2 backend now keeps
    assert ct2.backend.detect_language(chunks[0]) == hf.backend.detect_language(chunks[0])
    r1, r2 = hf.transcribe(long_audio), ct2.transcribe(long_audio)
    assert r1.segments == r2.segments and r1.text == r2.text


def test_cli(tiny_whisper, clips, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "utils.transcribe", str(clips[0]), str(bad), str(clips[1])]
    cmd += ["--model", str(tiny_whisper), "--language", "sv", "--srt", "--vtt", "--out", str(out)]
    cmd += ["--max-new-tokens", "8", "--backend", "transformers", "--strategy", "windows"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr  # one file failed, the others were done
    assert re.search(r"error: \S*broken.wav: cannot decode audio", proc.stderr), proc.stderr
    for clip in clips[:2]:
        for ext in ("txt", "srt", "vtt"):
            assert (out / f"{clip.stem}.{ext}").is_file()
        duration = len(load_audio(clip)) / SAMPLE_RATE
        assert_increasing(parse_srt((out / f"{clip.stem}.srt").read_text()), duration)
        assert_increasing(parse_vtt((out / f"{clip.stem}.vtt").read_text()), duration)
    assert len(proc.stdout.strip().splitlines()) == 2  # the two transcripts
    assert not list(out.glob("broken.*"))


def test_cli_refuses_a_bad_option_without_a_traceback(tiny_whisper, clips):
    cmd = [sys.executable, "-m", "utils.transcribe", str(clips[0]), "--model", str(tiny_whisper)]
    proc = subprocess.run(
        [*cmd, "--max-new-tokens", "lots"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "TranscribeOptions.max_new_tokens='lots'" in proc.stderr
    assert "Traceback" not in proc.stderr
