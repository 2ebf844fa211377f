"""Tests for utils.models.tiny_random: a real offline build whose tokenizer ids equal OpenAI Whisper's.

openai-whisper's own tokenizer (tiktoken on the same multilingual.tiktoken) is the reference for
every id; generation runs on the built model with the real WhisperForConditionalGeneration.generate.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import whisper.tokenizer as openai_tokenizer
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from utils.models.tiny_random import MARKER_FILE, build_tiny_whisper, build_tokenizer

# Sentences with the letters a Swedish/Italian run must round-trip, plus digits, punctuation,
# several spaces and a newline, which exercise the split pattern and the byte-level fallback.
SENTENCES = [
    "Hej där! Jag heter Åsa, bor i Göteborg och äter smörgås på fredagar.",
    "Perché l'università è chiusa? Però il caffè è già pronto.",
    "The 3 quick brown foxes jumped over 12,345 lazy dogs in 1999.",
    "  two  spaces,\ta tab\nand a newline; emoji 🎙 and 中文.",
]

# New tokens per generate call: the weights are random, so the model never says <|endoftext|> and
# would otherwise run to max_length (448 tokens, about a minute on 2 CPU cores).
MAX_NEW_TOKENS = 4


@pytest.fixture(scope="module")
def reference():
    """OpenAI's multilingual tokenizer (99 languages, the 51865-id vocabulary)."""
    return openai_tokenizer.get_tokenizer(multilingual=True)


@pytest.fixture(scope="module")
def model(tiny_whisper):
    return WhisperForConditionalGeneration.from_pretrained(tiny_whisper).eval()


@pytest.fixture(scope="module")
def processor(tiny_whisper):
    return WhisperProcessor.from_pretrained(tiny_whisper)


@pytest.fixture(scope="module")
def features(processor, sample_corpus):
    """Log-mel input of 3 s of a real Swedish clip (a sine if the sample corpus is absent)."""
    clips = sorted((sample_corpus / "sv-SE" / "clips").glob("*.mp3"))
    if clips:
        from utils.audio import load_audio

        audio = load_audio(clips[0])[: 3 * 16000]
    else:
        t = np.arange(3 * 16000) / 16000
        audio = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return processor(audio, sampling_rate=16000, return_tensors="pt").input_features


def generate(model, features, **kwargs) -> list[int]:
    """The full decoded sequence, prefix included (transformers 5 returns it in the dict form)."""
    with torch.no_grad():
        out = model.generate(
            features, max_new_tokens=MAX_NEW_TOKENS, return_dict_in_generate=True, **kwargs
        )
    return out.sequences[0].tolist()


def test_build_loads_offline_like_a_hub_checkpoint(tiny_whisper, model, processor):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # conftest: nothing here may reach the Hub
    config = model.config
    assert (config.num_mel_bins, config.vocab_size) == (80, 51865)
    assert (config.max_source_positions, config.max_target_positions) == (1500, 448)
    assert (config.encoder_layers, config.decoder_layers, config.d_model) == (2, 2, 64)
    assert sum(p.numel() for p in model.parameters()) < 5_000_000
    assert processor.feature_extractor.feature_size == 80
    assert len(processor.tokenizer) == 51865
    marker = json.loads((tiny_whisper / MARKER_FILE).read_text())
    assert marker["settings"]["n_mels"] == 80 and "RANDOM" in marker["note"]


def test_rebuild_is_a_no_op(tiny_whisper):
    weights = tiny_whisper / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert build_tiny_whisper(tiny_whisper) == tiny_whisper
    assert weights.stat().st_mtime_ns == before


def test_special_token_ids_equal_openai_whisper(processor, reference):
    tokenizer = processor.tokenizer
    expected = dict(reference.special_tokens)
    # Same id, HF's name for it in the v1/v2 vocabulary.
    expected["<|nocaptions|>"] = expected.pop("<|nospeech|>")
    assert {t: tokenizer.convert_tokens_to_ids(t) for t in expected} == expected
    spot_checks = {
        "<|endoftext|>": 50257,
        "<|startoftranscript|>": 50258,
        "<|en|>": 50259,
        "<|sv|>": 50273,
        "<|it|>": 50274,
        "<|translate|>": 50358,
        "<|transcribe|>": 50359,
        "<|startoflm|>": 50360,
        "<|startofprev|>": 50361,
        "<|nocaptions|>": 50362,
        "<|notimestamps|>": 50363,
        "<|0.00|>": 50364,
        "<|30.00|>": 51864,
    }
    assert {t: tokenizer.convert_tokens_to_ids(t) for t in spot_checks} == spot_checks
    # Timestamps start right after the last *special* token, which is how transformers finds them.
    assert tokenizer.all_special_ids[-1] + 1 == reference.timestamp_begin == 50364


@pytest.mark.parametrize("text", SENTENCES)
def test_text_ids_equal_openai_whisper_and_round_trip(processor, reference, text):
    tokenizer = processor.tokenizer
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert ids == reference.encode(text)
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_label_prefix_is_a_real_runs(processor):
    tokenizer = processor.tokenizer
    tokenizer.set_prefix_tokens(language="swedish", task="transcribe")
    ids = tokenizer("Hej där").input_ids
    assert ids[:4] == [50258, 50273, 50359, 50363] and ids[-1] == 50257
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Hej där"
    tokenizer.set_prefix_tokens(language="it", task="translate")
    assert tokenizer("Però").input_ids[:4] == [50258, 50274, 50358, 50363]


def test_generation_config_matches_openai_whisper(model, reference):
    gen = model.generation_config
    assert gen.lang_to_id == {
        f"<|{code}|>": reference.to_language_token(code) for code in reference.all_language_codes
    }
    assert gen.task_to_id == {"transcribe": 50359, "translate": 50358}
    assert (gen.decoder_start_token_id, gen.eos_token_id, gen.no_timestamps_token_id) == (
        50258,
        50257,
        50363,
    )
    assert gen.is_multilingual and gen.max_length == 448
    # whisper.decoding suppresses non-speech tokens plus these control tokens ("-1" default).
    controls = [reference.sot, reference.translate, reference.transcribe, reference.sot_lm]
    controls += [reference.sot_prev, reference.no_speech]
    assert gen.suppress_tokens == sorted(set(reference.non_speech_tokens) | set(controls))
    assert gen.begin_suppress_tokens == [*reference.encode(" "), reference.eot]


@pytest.mark.parametrize(
    ("language", "task", "task_id"), [("sv", "transcribe", 50359), ("swedish", "translate", 50358)]
)
def test_generate_forces_language_and_task(model, features, language, task, task_id):
    sequence = generate(model, features, language=language, task=task)
    assert sequence[:4] == [50258, 50273, task_id, 50363]
    assert len(sequence) == 4 + MAX_NEW_TOKENS


def test_generate_detects_language_when_none_given(model, features):
    sequence = generate(model, features)
    assert sequence[1] in model.generation_config.lang_to_id.values()
    assert sequence[1] == model.detect_language(features).item()


def test_generate_with_timestamps(model, processor, features):
    with torch.no_grad():
        # Without return_dict_in_generate, generate returns the new tokens only (no prefix).
        tokens = model.generate(
            features, language="sv", return_timestamps=True, max_new_tokens=MAX_NEW_TOKENS
        )[0].tolist()
    # Without <|notimestamps|> the first token must be a timestamp, at most 1.00 s in.
    assert 50364 <= tokens[0] <= 50364 + 50
    text = processor.tokenizer.decode(tokens, decode_with_timestamps=True)
    assert text.startswith(f"<|{(tokens[0] - 50364) * 0.02:.2f}|>")
    offsets = processor.tokenizer.decode(tokens, output_offsets=True)["offsets"]
    assert offsets and offsets[0]["timestamp"][0] == pytest.approx((tokens[0] - 50364) * 0.02)


def test_128_mel_vocabulary_equals_large_v3():
    tokenizer = build_tokenizer(n_mels=128)
    reference = openai_tokenizer.get_tokenizer(multilingual=True, num_languages=100)
    assert len(tokenizer) == 51866
    expected = dict(reference.special_tokens)
    assert {t: tokenizer.convert_tokens_to_ids(t) for t in expected} == expected
    assert tokenizer.convert_tokens_to_ids(["<|yue|>", "<|notimestamps|>"]) == [50358, 50364]


def test_cli_builds_in_a_fresh_directory(tmp_path, repo_root):
    out = tmp_path / "tiny"
    run = subprocess.run(
        [sys.executable, "-m", "utils.models.tiny_random", str(out)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "tiny whisper ready" in run.stdout
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", MARKER_FILE} <= names
    assert {"tokenizer.json", "preprocessor_config.json", "processor_config.json"} <= names


def test_missing_openai_whisper_says_how_to_install(tmp_path, repo_root):
    # A real interpreter that finds an empty `whisper` package first on its path, as if
    # openai-whisper were not installed (it cannot be uninstalled from inside the test run).
    (tmp_path / "whisper").mkdir()
    (tmp_path / "whisper" / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(repo_root)])}
    run = subprocess.run(
        [sys.executable, "-m", "utils.models.tiny_random", str(tmp_path / "out")],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1
    assert "pip install openai-whisper" in run.stderr
    assert not (tmp_path / "out" / MARKER_FILE).exists()
