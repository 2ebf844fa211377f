"""A tiny Whisper with random weights, built offline, for fast tests.

The model is config-sized (a few million parameters, random weights from a fixed seed), but the
tokenizer, feature extractor and generation config are the real ones: the byte-level BPE is read
from ``multilingual.tiktoken`` (or ``gpt2.tiktoken`` for an English-only build), both shipped inside
the ``openai-whisper`` package, and Whisper's special tokens are added in OpenAI's order, so every
id (``<|sv|>`` = 50273, ``<|notimestamps|>`` = 50363, English-only 50362, ...) equals the hub
checkpoint's. Labels made with it look exactly like a real run's, and ``generate`` takes
``language=``, ``task=`` and ``return_timestamps=`` as for a hub checkpoint. Its transcripts mean
nothing: tests of behaviour that depends on the weights use the real tiny.en (``tiny_en.py``).

    python -m utils.models.tiny_random OUT_DIR [--n-mels 80] [--english-only]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from .parts import (
    MAX_SOURCE_POSITIONS,
    MAX_TARGET_POSITIONS,
    N_TIMESTAMPS,
    generation_config,
    is_complete,
    no_speech_token,
    save_checkpoint,
    special_tokens,
    whisper_tokenizer,
)

# Mergeable ranks of the text vocabularies: <|endoftext|> is the first id after them.
N_TEXT_TOKENS = {True: 50257, False: 50256}  # multilingual, English-only (GPT-2's)
TIKTOKEN_FILES = {True: "multilingual.tiktoken", False: "gpt2.tiktoken"}

# Written last: its presence (with matching settings) marks a complete build.
MARKER_FILE = "tiny_whisper.json"


@dataclass(frozen=True)
class TinyWhisperSpec:
    """Size of the tiny model; everything else (vocabulary, positions, tokens) is Whisper's."""

    n_mels: int = 80  # mel bins: 80 for tiny..large-v2, 128 for large-v3 (also picks the vocab)
    d_model: int = 64  # width of encoder and decoder (whisper-tiny: 384)
    layers: int = 2  # encoder layers and, separately, decoder layers (whisper-tiny: 4 + 4)
    heads: int = 4  # attention heads per layer; d_model must divide by it (head dim 16)
    ffn_dim: int = 256  # feed-forward width, 4 x d_model as in every Whisper
    seed: int = 0  # torch.manual_seed for the random weights, so builds are reproducible
    multilingual: bool = True  # False: an English-only (*.en) vocabulary and generation config

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "multilingual":
                continue
            if not isinstance(value, int) or (value < 1 and field.name != "seed"):
                raise ValueError(
                    f"tiny whisper: {field.name} must be a positive int, got {value!r}"
                )
        if self.d_model % self.heads:
            raise ValueError(
                f"tiny whisper: d_model={self.d_model} must be divisible by heads={self.heads}"
            )
        if not self.multilingual and self.n_mels != 80:
            raise ValueError("tiny whisper: English-only Whispers have 80 mel bins")


def tiktoken_asset(multilingual: bool = True) -> Path:
    """Path of ``multilingual.tiktoken`` (or ``gpt2.tiktoken``) inside ``openai-whisper``.

    The package is located without importing it (its import pulls in numba and takes seconds).
    """
    name = TIKTOKEN_FILES[multilingual]
    spec = importlib.util.find_spec("whisper")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            path = Path(folder) / "assets" / name
            if path.is_file():
                return path
    raise FileNotFoundError(
        f"tiny whisper: whisper/assets/{name} not found; it ships in the openai-whisper "
        "package, a test-time dependency: pip install openai-whisper"
    )


def build_tokenizer(n_mels: int = 80, multilingual: bool = True):
    """A ``WhisperTokenizer`` with the real multilingual (or English-only) vocabulary and ids."""
    from transformers.convert_slow_tokenizer import TikTokenConverter

    asset = str(tiktoken_asset(multilingual))
    # The converter turns tiktoken's ranks into a GPT-2 style vocab + merges; Whisper's split
    # pattern is GPT-2's, which the byte-level pre-tokenizer of WhisperTokenizer applies.
    vocab, merges = TikTokenConverter(vocab_file=asset).extract_vocab_merges_from_model(asset)
    n_text = N_TEXT_TOKENS[multilingual]
    if len(vocab) != n_text:
        raise ValueError(f"tiny whisper: {asset} has {len(vocab)} tokens, expected {n_text}")
    tokenizer = whisper_tokenizer(vocab, merges, n_mels)
    expected = n_text + len(special_tokens(n_mels)) + N_TIMESTAMPS
    if len(tokenizer) != expected:
        raise RuntimeError(f"tiny whisper: tokenizer has {len(tokenizer)} ids, expected {expected}")
    return tokenizer


def suppress_token_ids(tokenizer, n_mels: int = 80, multilingual: bool = True) -> list[int]:
    """Ids Whisper never samples: non-speech symbols plus the control tokens (as in hub configs)."""
    # Text tokens Whisper suppresses: symbols and speaker marks that are not speech
    # (whisper.tokenizer.Tokenizer.non_speech_tokens). transformers' lists also hold a few special
    # ids; only their text part is used and the control ids are looked up in the built vocabulary,
    # so the list is right for large-v3 too.
    from transformers.models.whisper.configuration_whisper import (
        NON_SPEECH_TOKENS,
        NON_SPEECH_TOKENS_MULTI,
    )

    listed = NON_SPEECH_TOKENS_MULTI if multilingual else NON_SPEECH_TOKENS
    controls = ["<|startoftranscript|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>"]
    controls += ["<|startofprev|>", no_speech_token(n_mels)]
    text_part = [t for t in listed if t < N_TEXT_TOKENS[multilingual]]
    return sorted(set(text_part) | set(tokenizer.convert_tokens_to_ids(controls)))


def build_model(tokenizer, spec: TinyWhisperSpec):
    """``WhisperForConditionalGeneration`` of size ``spec`` with seeded random weights."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    ids = tokenizer.convert_tokens_to_ids
    eot = ids("<|endoftext|>")
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=spec.n_mels,
        d_model=spec.d_model,
        encoder_layers=spec.layers,
        decoder_layers=spec.layers,
        encoder_attention_heads=spec.heads,
        decoder_attention_heads=spec.heads,
        encoder_ffn_dim=spec.ffn_dim,
        decoder_ffn_dim=spec.ffn_dim,
        max_source_positions=MAX_SOURCE_POSITIONS,
        max_target_positions=MAX_TARGET_POSITIONS,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=ids("<|startoftranscript|>"),
        begin_suppress_tokens=[*tokenizer.encode(" ", add_special_tokens=False), eot],
    )
    # fork_rng: seeding must not disturb the caller's (e.g. a test's) global random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = WhisperForConditionalGeneration(config)
    model.generation_config = generation_config(
        tokenizer,
        spec.multilingual,
        suppress_token_ids(tokenizer, spec.n_mels, spec.multilingual),
        # Cross-attention heads for token-level timestamps: every head of the upper half of the
        # decoder (real checkpoints list the heads found to align best).
        [
            [layer, head]
            for layer in range(spec.layers // 2, spec.layers)
            for head in range(spec.heads)
        ],
        spec.n_mels,
    )
    model.eval()
    return model


def build_tiny_whisper(
    out_dir: str | os.PathLike,
    n_mels: int = 80,
    d_model: int = 64,
    layers: int = 2,
    heads: int = 4,
    ffn_dim: int = 256,
    seed: int = 0,
    multilingual: bool = True,
) -> Path:
    """Build (or reuse) a tiny random-weight Whisper checkpoint in ``out_dir``; return its path.

    The directory loads like a hub checkpoint: ``WhisperForConditionalGeneration.from_pretrained``
    and ``WhisperProcessor.from_pretrained`` (model, generation config, feature extractor with
    ``n_mels`` bins, tokenizer with the real ids). A directory that already holds a complete build
    with the same settings is returned as is; anything else there is replaced.
    Needs ``openai-whisper`` installed (for its tiktoken vocabularies).
    """
    spec = TinyWhisperSpec(n_mels, d_model, layers, heads, ffn_dim, seed, multilingual)
    out_dir = Path(out_dir)
    settings = dataclasses.asdict(spec)
    if is_complete(out_dir, MARKER_FILE, settings):
        return out_dir
    tiktoken_asset(multilingual)  # fail before any work if openai-whisper is missing
    tokenizer = build_tokenizer(n_mels, multilingual)
    model = build_model(tokenizer, spec)
    marker = {
        "note": "tiny Whisper with RANDOM weights, for tests (utils/models/tiny_random.py)",
        "settings": settings,
        "vocab_size": len(tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return save_checkpoint(out_dir, model, tokenizer, n_mels, MARKER_FILE, marker)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m utils.models.tiny_random",
        description="Build a tiny random-weight Whisper checkpoint (real tokenizer), offline.",
    )
    parser.add_argument("out_dir", type=Path, help="directory to write the checkpoint to")
    parser.add_argument("--n-mels", type=int, default=80, choices=(80, 128), help="mel bins")
    parser.add_argument("--d-model", type=int, default=TinyWhisperSpec.d_model)
    parser.add_argument("--layers", type=int, default=TinyWhisperSpec.layers)
    parser.add_argument("--heads", type=int, default=TinyWhisperSpec.heads)
    parser.add_argument("--ffn-dim", type=int, default=TinyWhisperSpec.ffn_dim)
    parser.add_argument("--seed", type=int, default=TinyWhisperSpec.seed)
    parser.add_argument("--english-only", action="store_true", help="a *.en vocabulary")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        tiktoken_asset(not args.english_only)  # before importing transformers: fails fast
        path = build_tiny_whisper(
            args.out_dir,
            n_mels=args.n_mels,
            d_model=args.d_model,
            layers=args.layers,
            heads=args.heads,
            ffn_dim=args.ffn_dim,
            seed=args.seed,
            multilingual=not args.english_only,
        )
    except (FileNotFoundError, ValueError, ModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"tiny whisper ready in {path} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
