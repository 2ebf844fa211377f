"""A tiny Whisper checkpoint built offline, for tests and offline runs.

The model is config-sized (a few million parameters, random weights from a fixed seed), but the
tokenizer, feature extractor and generation config are the real multilingual ones: the byte-level
BPE vocabulary is read from ``multilingual.tiktoken`` (shipped inside the ``openai-whisper``
package), and Whisper's special tokens are added in OpenAI's order, so every id (``<|sv|>`` =
50273, ``<|transcribe|>`` = 50359, ``<|notimestamps|>`` = 50363, ...) equals the one of
``openai/whisper-small``. Labels made with it therefore look exactly like a real run's, and
``generate`` accepts ``language=``, ``task=`` and ``return_timestamps=`` as for a hub checkpoint.

    python -m utils.tiny_whisper OUT_DIR [--n-mels 80]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Whisper's multilingual BPE has 50257 mergeable ranks; <|endoftext|> is the first id after them.
N_TEXT_TOKENS = 50257

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

# Written last: its presence (with matching settings) marks a complete build.
MARKER_FILE = "tiny_whisper.json"

# Files a complete build has besides the marker (the model weights are checked separately since
# save_pretrained may shard them).
REQUIRED_FILES = (
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
)


@dataclass(frozen=True)
class TinyWhisperSpec:
    """Size of the tiny model; everything else (vocabulary, positions, tokens) is Whisper's."""

    n_mels: int = 80  # mel bins: 80 for tiny..large-v2, 128 for large-v3 (also picks the vocab)
    d_model: int = 64  # width of encoder and decoder (whisper-tiny: 384)
    layers: int = 2  # encoder layers and, separately, decoder layers (whisper-tiny: 4 + 4)
    heads: int = 4  # attention heads per layer; d_model must divide by it (head dim 16)
    ffn_dim: int = 256  # feed-forward width, 4 x d_model as in every Whisper
    seed: int = 0  # torch.manual_seed for the random weights, so builds are reproducible

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or (value < 1 and field.name != "seed"):
                raise ValueError(
                    f"tiny whisper: {field.name} must be a positive int, got {value!r}"
                )
        if self.d_model % self.heads:
            raise ValueError(
                f"tiny whisper: d_model={self.d_model} must be divisible by heads={self.heads}"
            )


def tiktoken_asset() -> Path:
    """Path of ``multilingual.tiktoken`` inside the installed ``openai-whisper`` package.

    The package is located without importing it (its import pulls in numba and takes seconds).
    """
    spec = importlib.util.find_spec("whisper")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            path = Path(folder) / "assets" / "multilingual.tiktoken"
            if path.is_file():
                return path
    raise FileNotFoundError(
        "tiny whisper: whisper/assets/multilingual.tiktoken not found; it ships in the openai-whisper "
        "package, a test-time dependency: pip install openai-whisper"
    )


def language_tokens(n_mels: int = 80) -> list[str]:
    """``<|en|>``, ``<|zh|>``, ... in id order: 99 languages, 100 (with ``<|yue|>``) for large-v3."""
    # OpenAI's language order (whisper/tokenizer.py): a language's id is <|startoftranscript|> + 1
    # + its index. transformers keeps its own copy of that dict (the test checks it against
    # openai-whisper); its 100th entry, "yue", exists only in large-v3.
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return [f"<|{code}|>" for code in list(LANGUAGES)[: 100 if n_mels == N_MELS_V3 else 99]]


def no_speech_token(n_mels: int = 80) -> str:
    """HF's v1/v2 tokenizers name this id <|nocaptions|>; large-v3's (and OpenAI's) <|nospeech|>."""
    return "<|nospeech|>" if n_mels == N_MELS_V3 else "<|nocaptions|>"


def special_tokens(n_mels: int = 80) -> list[str]:
    """Whisper's special tokens in id order, starting at 50257 (timestamps excluded)."""
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


def build_tokenizer(n_mels: int = 80):
    """A ``WhisperTokenizer`` (tokenizers backend) with the real multilingual vocabulary and ids."""
    from transformers import AddedToken, WhisperTokenizer
    from transformers.convert_slow_tokenizer import TikTokenConverter

    asset = str(tiktoken_asset())
    # The converter turns tiktoken's ranks into a GPT-2 style vocab + merges; Whisper's split
    # pattern is GPT-2's, which the byte-level pre-tokenizer of WhisperTokenizer applies.
    vocab, merges = TikTokenConverter(vocab_file=asset).extract_vocab_merges_from_model(asset)
    if len(vocab) != N_TEXT_TOKENS:
        raise ValueError(f"tiny whisper: {asset} has {len(vocab)} tokens, expected {N_TEXT_TOKENS}")
    tokenizer = WhisperTokenizer(vocab=vocab, merges=merges, model_max_length=1024)
    tokenizer.add_special_tokens({"extra_special_tokens": special_tokens(n_mels)})
    # Timestamps must not be *special*: WhisperTokenizer takes the last special id + 1
    # (<|notimestamps|> + 1) as the first timestamp, as the hub tokenizers do.
    tokenizer.add_tokens(
        [AddedToken(t, lstrip=False, rstrip=False, normalized=False) for t in timestamp_tokens()]
    )
    expected = N_TEXT_TOKENS + len(special_tokens(n_mels)) + N_TIMESTAMPS
    if len(tokenizer) != expected:
        raise RuntimeError(f"tiny whisper: tokenizer has {len(tokenizer)} ids, expected {expected}")
    return tokenizer


def suppress_token_ids(tokenizer, n_mels: int = 80) -> list[int]:
    """Ids Whisper never samples: non-speech symbols plus the control tokens (as in hub configs)."""
    # Text tokens (ids < 50257) Whisper suppresses: symbols and speaker marks that are not speech
    # (whisper.tokenizer.Tokenizer.non_speech_tokens). transformers' list also holds a few special
    # ids of the 51865 vocabulary; only its text part is used and the control ids are looked up in
    # the built vocabulary, so the list is right for large-v3 too.
    from transformers.models.whisper.configuration_whisper import NON_SPEECH_TOKENS_MULTI

    controls = ["<|startoftranscript|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>"]
    controls += ["<|startofprev|>", no_speech_token(n_mels)]
    text_part = [t for t in NON_SPEECH_TOKENS_MULTI if t < N_TEXT_TOKENS]
    return sorted(set(text_part) | set(tokenizer.convert_tokens_to_ids(controls)))


def build_generation_config(tokenizer, spec: TinyWhisperSpec):
    """The generation config a hub Whisper carries, with ids read from ``tokenizer``."""
    from transformers import GenerationConfig

    ids = tokenizer.convert_tokens_to_ids
    eot = ids("<|endoftext|>")
    space = tokenizer.encode(" ", add_special_tokens=False)
    return GenerationConfig(
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=ids("<|startoftranscript|>"),
        max_length=MAX_TARGET_POSITIONS,
        is_multilingual=True,
        lang_to_id={t: ids(t) for t in language_tokens(spec.n_mels)},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX,
        return_timestamps=False,
        suppress_tokens=suppress_token_ids(tokenizer, spec.n_mels),
        # A transcript never starts with a bare space (220) or with end-of-text.
        begin_suppress_tokens=[*space, eot],
        # Cross-attention heads for token-level timestamps: every head of the upper half of the
        # decoder (real checkpoints list the heads found to align best).
        alignment_heads=[
            [layer, head]
            for layer in range(spec.layers // 2, spec.layers)
            for head in range(spec.heads)
        ],
    )


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
    model.eval()
    return model


def _complete(out_dir: Path, spec: TinyWhisperSpec) -> bool:
    """True if ``out_dir`` holds a finished build of ``spec``."""
    marker = out_dir / MARKER_FILE
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    has_weights = any(out_dir.glob("model*.safetensors")) or any(out_dir.glob("pytorch_model*.bin"))
    return (
        recorded.get("spec") == dataclasses.asdict(spec)
        and has_weights
        and all((out_dir / name).is_file() for name in REQUIRED_FILES)
    )


def build_tiny_whisper(
    out_dir: str | os.PathLike,
    n_mels: int = 80,
    d_model: int = 64,
    layers: int = 2,
    heads: int = 4,
    ffn_dim: int = 256,
    seed: int = 0,
) -> Path:
    """Build (or reuse) a tiny random-weight Whisper checkpoint in ``out_dir``; return its path.

    The directory loads like a hub checkpoint: ``WhisperForConditionalGeneration.from_pretrained``
    and ``WhisperProcessor.from_pretrained`` (model, generation config, feature extractor with
    ``n_mels`` bins, tokenizer with the real multilingual ids). A directory that already holds a
    complete build with the same settings is returned as is; anything else there is overwritten.
    Needs ``openai-whisper`` installed (for its ``multilingual.tiktoken``).
    """
    spec = TinyWhisperSpec(
        n_mels=n_mels, d_model=d_model, layers=layers, heads=heads, ffn_dim=ffn_dim, seed=seed
    )
    out_dir = Path(out_dir)
    if _complete(out_dir, spec):
        return out_dir

    from transformers import WhisperFeatureExtractor, WhisperProcessor

    tiktoken_asset()  # fail before touching out_dir if openai-whisper is missing
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER_FILE).unlink(missing_ok=True)  # a half-written build must not look complete

    tokenizer = build_tokenizer(n_mels)
    model = build_model(tokenizer, spec)
    model.generation_config = build_generation_config(tokenizer, spec)
    feature_extractor = WhisperFeatureExtractor(feature_size=n_mels)
    processor = WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)

    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    # transformers 5 nests the feature extractor in processor_config.json; hub checkpoints also
    # carry preprocessor_config.json, which CTranslate2 / faster-whisper read for the mel bins.
    feature_extractor.save_pretrained(out_dir)

    marker = {
        "note": "tiny Whisper with RANDOM weights, for tests and offline runs (utils/tiny_whisper.py)",
        "spec": dataclasses.asdict(spec),
        "vocab_size": len(tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    tmp = out_dir / f".{MARKER_FILE}.tmp"
    tmp.write_text(json.dumps(marker, indent=2) + "\n")
    os.replace(tmp, out_dir / MARKER_FILE)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m utils.tiny_whisper",
        description="Build a tiny random-weight Whisper checkpoint (real multilingual tokenizer), offline.",
    )
    parser.add_argument("out_dir", type=Path, help="directory to write the checkpoint to")
    parser.add_argument("--n-mels", type=int, default=80, choices=(80, 128), help="mel bins")
    parser.add_argument("--d-model", type=int, default=TinyWhisperSpec.d_model)
    parser.add_argument("--layers", type=int, default=TinyWhisperSpec.layers)
    parser.add_argument("--heads", type=int, default=TinyWhisperSpec.heads)
    parser.add_argument("--ffn-dim", type=int, default=TinyWhisperSpec.ffn_dim)
    parser.add_argument("--seed", type=int, default=TinyWhisperSpec.seed)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        tiktoken_asset()  # before importing transformers (seconds), so a missing package fails fast
        path = build_tiny_whisper(
            args.out_dir,
            n_mels=args.n_mels,
            d_model=args.d_model,
            layers=args.layers,
            heads=args.heads,
            ffn_dim=args.ffn_dim,
            seed=args.seed,
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"tiny whisper ready in {path} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
