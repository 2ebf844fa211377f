"""CTranslate2 exports of Whisper checkpoints, for faster-whisper's engine: made once, found again.

An export lives next to its checkpoint (`<model>/ctranslate2/`), or in a cache folder for a Hub
id; the transcriber's "auto" backend picks it up when it is there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

CT2_SUBDIR = "ctranslate2"  # where export_ctranslate2 puts an export next to its checkpoint


def is_ct2_export(path: str | Path) -> bool:
    """True when path is a directory holding a CTranslate2 model (model.bin + config.json)."""
    path = Path(path)
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def find_ct2_export(model: str | Path) -> Path | None:
    """The CTranslate2 export of a checkpoint, if one exists: the directory itself, its
    ctranslate2/ subdirectory, or (for a Hub id) the export cached by export_ctranslate2."""
    candidates = [Path(model), Path(model) / CT2_SUBDIR]
    if not Path(model).exists():
        candidates.append(ct2_cache_dir(str(model)))
    for candidate in candidates:
        if is_ct2_export(candidate):
            return candidate
    return None


def default_ct2_dir(model: str | Path) -> Path:
    """Where export_ctranslate2 writes by default: <model>/ctranslate2 for a local checkpoint,
    a cache folder for a Hub id."""
    return Path(model) / CT2_SUBDIR if Path(model).is_dir() else ct2_cache_dir(str(model))


def ct2_cache_dir(model: str) -> Path:
    """Where a Hub checkpoint's CTranslate2 export is cached (the Hub cache is read-only to us)."""
    root = Path(os.environ.get("WHISPER_CT2_CACHE", Path.home() / ".cache" / "whisper-ct2"))
    return root / model.replace("/", "--")


def write_faster_whisper_files(processor, out_dir: Path):
    """Write the two files faster-whisper reads next to model.bin: tokenizer.json (without it, it
    downloads openai/whisper-tiny's from the Hub) and preprocessor_config.json (mel bins: 80 or 128).

    transformers 5 saves the feature extractor inside processor_config.json, which faster-whisper
    does not read, and the converter's copy_files can only copy files that exist; so both files are
    written from the loaded processor instead.
    """
    processor.tokenizer.backend_tokenizer.save(str(out_dir / "tokenizer.json"))
    processor.feature_extractor.to_json_file(str(out_dir / "preprocessor_config.json"))


def copy_generation_config(model_dir: str | Path, out_dir: Path) -> None:
    """Keep the checkpoint's generation config beside the export: a fine-tuned model's language
    is recorded there (CTranslate2 itself ignores the file)."""
    from transformers import GenerationConfig

    with contextlib.suppress(OSError):  # none to keep
        GenerationConfig.from_pretrained(str(model_dir)).save_pretrained(out_dir)


def export_ctranslate2(
    model_dir: str | Path,
    out_dir: str | Path | None = None,
    quantization: str | None = None,
    force: bool = False,
) -> Path:
    """Convert a Whisper checkpoint (local dir or Hub id) to CTranslate2 for faster-whisper.

    out_dir defaults to <model_dir>/ctranslate2 (a cache folder for a Hub id, $WHISPER_CT2_CACHE
    or ~/.cache/whisper-ct2), where Transcriber's "auto" backend finds it.
    quantization is CTranslate2's weight type: None keeps float32 (the same weights, bit for bit);
    "int8" quarters the size and is usually faster on CPU; "float16"/"int8_float16" for GPUs.
    The tokenizer and feature settings are copied along so faster-whisper needs no Hub access.
    """
    from ctranslate2.converters import TransformersConverter
    from transformers import WhisperProcessor

    out_dir = Path(out_dir) if out_dir is not None else default_ct2_dir(model_dir)
    if not force and is_ct2_export(out_dir):
        return out_dir
    # Convert into a sibling temp dir and rename, so an interrupted export never looks complete.
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    TransformersConverter(str(model_dir)).convert(str(tmp), quantization=quantization, force=True)
    write_faster_whisper_files(WhisperProcessor.from_pretrained(str(model_dir)), tmp)
    copy_generation_config(model_dir, tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir
