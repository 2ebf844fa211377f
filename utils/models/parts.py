"""The parts every Whisper checkpoint built here shares: special tokens, tokenizer, generation
config, and a save that is complete or absent.

Whisper's special tokens follow the text vocabulary in OpenAI's order (whisper/tokenizer.py):
<|endoftext|>, <|startoftranscript|>, one token per language, <|translate|>, <|transcribe|>,
<|startoflm|>, <|startofprev|>, <|nospeech|>, <|notimestamps|>, then 1501 timestamps. Built in
that order, every id equals the hub checkpoint's (multilingual <|sv|> = 50273, English-only
<|notimestamps|> = 50362, ...).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

# Whisper's timestamp tokens: <|0.00|> ... <|30.00|> in steps of 20 ms (1501 tokens).
TIME_PRECISION = 0.02
N_TIMESTAMPS = 1501

# Decoder length of every Whisper model (prefix included); callers limit new tokens themselves.
MAX_TARGET_POSITIONS = 448

# Encoder positions: 3000 mel frames of a 30 s window, halved by the stride-2 convolution.
MAX_SOURCE_POSITIONS = 1500

# Real checkpoints let the first timestamp be at most 1.00 s (50 steps of 20 ms).
MAX_INITIAL_TIMESTAMP_INDEX = 50

# large-v3 (128 mel bins) added Cantonese ("yue"): 100 languages and a vocabulary of 51866 ids,
# shifting every special token after the languages by one. Earlier models have 99 languages.
N_MELS_V3 = 128

# Files a complete checkpoint has besides its weights (save_pretrained may shard those).
REQUIRED_FILES = (
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
)


def language_tokens(n_mels: int = 80) -> list[str]:
    """``<|en|>``, ``<|zh|>``, ... in id order: 99 languages, 100 (with ``<|yue|>``) for large-v3."""
    # transformers keeps OpenAI's language dict (the tests check it against openai-whisper); its
    # 100th entry, "yue", exists only in large-v3.
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return [f"<|{code}|>" for code in list(LANGUAGES)[: 100 if n_mels == N_MELS_V3 else 99]]


def no_speech_token(n_mels: int = 80) -> str:
    """HF's v1/v2 tokenizers name this id <|nocaptions|>; large-v3's (and OpenAI's) <|nospeech|>."""
    return "<|nospeech|>" if n_mels == N_MELS_V3 else "<|nocaptions|>"


def special_tokens(n_mels: int = 80) -> list[str]:
    """Whisper's special tokens in id order, from <|endoftext|> on (timestamps excluded)."""
    return [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *language_tokens(n_mels),
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        no_speech_token(n_mels),
        "<|notimestamps|>",
    ]


def timestamp_tokens() -> list[str]:
    """``<|0.00|>`` ... ``<|30.00|>``: ordinary added tokens right after ``<|notimestamps|>``."""
    return [f"<|{i * TIME_PRECISION:.2f}|>" for i in range(N_TIMESTAMPS)]


def whisper_tokenizer(vocab: dict[str, int], merges: list, n_mels: int = 80):
    """A ``WhisperTokenizer`` from a byte-level BPE (vocab + merges) with Whisper's special and
    timestamp tokens added in OpenAI's order, and <|endoftext|> as its pad token (as on the hub:
    without one transformers 5.15's Trainer copies pad_token_id=None onto the model and stops)."""
    from transformers import AddedToken, WhisperTokenizer

    tokenizer = WhisperTokenizer(
        vocab=vocab, merges=merges, model_max_length=1024, pad_token="<|endoftext|>"
    )
    tokenizer.add_special_tokens({"extra_special_tokens": special_tokens(n_mels)})
    # Timestamps must not be *special*: WhisperTokenizer takes the last special id + 1
    # (<|notimestamps|> + 1) as the first timestamp, as the hub tokenizers do.
    tokenizer.add_tokens(
        [AddedToken(t, lstrip=False, rstrip=False, normalized=False) for t in timestamp_tokens()]
    )
    return tokenizer


def generation_config(
    tokenizer,
    multilingual: bool,
    suppress_tokens: list[int],
    alignment_heads: list[list[int]],
    n_mels: int = 80,
):
    """The generation config a hub Whisper carries, with ids read from ``tokenizer``. English-only
    checkpoints have no ``lang_to_id``/``task_to_id`` (their prompt has no such tokens)."""
    from transformers import GenerationConfig

    ids = tokenizer.convert_tokens_to_ids
    eot = ids("<|endoftext|>")
    extra = {}
    if multilingual:
        extra = {
            "lang_to_id": {t: ids(t) for t in language_tokens(n_mels)},
            "task_to_id": {"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        }
    return GenerationConfig(
        # The hub configs say 50257 for both: <|endoftext|> in the multilingual vocabulary,
        # <|startoftranscript|> in the English-only one (a GPT-2 leftover; generate ignores it).
        bos_token_id=ids("<|startoftranscript|>") if not multilingual else eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=ids("<|startoftranscript|>"),
        max_length=MAX_TARGET_POSITIONS,
        is_multilingual=multilingual,
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX,
        return_timestamps=False,
        suppress_tokens=sorted(suppress_tokens),
        # A transcript never starts with a bare space or with end-of-text.
        begin_suppress_tokens=[*tokenizer.encode(" ", add_special_tokens=False), eot],
        alignment_heads=[list(pair) for pair in alignment_heads],
        **extra,
    )


def is_complete(out_dir: Path, marker_file: str, settings: dict) -> bool:
    """True if ``out_dir`` holds a finished save whose marker records ``settings``."""
    try:
        recorded = json.loads((out_dir / marker_file).read_text())
    except (OSError, ValueError):
        return False
    has_weights = any(out_dir.glob("model*.safetensors")) or any(out_dir.glob("pytorch_model*.bin"))
    return (
        recorded.get("settings") == settings
        and has_weights
        and all((out_dir / name).is_file() for name in REQUIRED_FILES)
    )


def save_checkpoint(
    out_dir: Path, model, tokenizer, n_mels: int, marker_file: str, marker: dict
) -> Path:
    """Save model + processor into ``out_dir`` all or nothing: everything is written into a
    temporary sibling folder, the marker last, and the folder is then renamed into place, so a
    killed build never leaves a checkpoint that looks complete."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        feature_extractor = WhisperFeatureExtractor(feature_size=n_mels)
        model.save_pretrained(tmp)
        WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(
            tmp
        )
        # transformers 5 nests the feature extractor in processor_config.json; hub checkpoints
        # also carry preprocessor_config.json, which CTranslate2 / faster-whisper read.
        feature_extractor.save_pretrained(tmp)
        (tmp / marker_file).write_text(json.dumps(marker, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
