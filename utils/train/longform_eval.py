"""Does long audio still work after fine-tuning? A WER on a recording stitched from eval clips.

Common Voice clips are a few seconds long; a model fine-tuned on them can lose what long-form
transcription needs (timestamps to seek by, use of previous text) and nobody would notice in the
clip-level WER. Here the eval split's audio (read again from the sources the store was made from,
when they are on disk) is joined with short pauses into one recording of a few minutes and
transcribed long-form by the base model and the fine-tuned one.
"""

from __future__ import annotations

import logging

import numpy as np

from ..audio import SAMPLE_RATE, load_audio
from ..errors import PipelineError
from ..sources import open_source
from .metrics import text_metrics

log = logging.getLogger(__name__)

# Pauses between the joined clips, drawn uniformly (seconds): sentences of one speaker.
PAUSE_SECONDS = (0.3, 1.2)
LOCAL_KINDS = ("common_voice", "manifest")  # sources whose audio is on disk to read again


def stitched_audio(manifest: dict, split: str, ids: set[str], minutes: float, seed: int = 0):
    """(audio, reference text) of up to `minutes` of the split's clips joined by pauses, read
    from the store's local sources; None when none can be read (a Hub source, a moved folder)."""
    rng = np.random.default_rng(seed)
    parts, texts, total = [], [], 0.0
    for described in manifest.get("settings", {}).get("sources", []):
        if described.get("kind") not in LOCAL_KINDS or split not in described.get("splits", []):
            continue
        options = {"name": described["name"], "splits": [split]}
        if described.get("kind") == "common_voice":
            options["locale"] = described.get("locale")
        elif described.get("audio_root"):
            options["audio_root"] = described["audio_root"]
        try:
            source = open_source(described["origin"], **options)
        except PipelineError as err:
            log.info("long-form evaluation: %s cannot be read again (%s)", described["origin"], err)
            continue
        for example in source.examples(split):
            if example.id not in ids:
                continue
            try:
                audio = load_audio(example.audio, max_seconds=30)
            except PipelineError:
                continue
            parts += [audio, np.zeros(int(rng.uniform(*PAUSE_SECONDS) * SAMPLE_RATE), np.float32)]
            texts.append(example.text)
            total += len(parts[-2]) / SAMPLE_RATE
            if total >= minutes * 60:
                break
        if total >= minutes * 60:
            break
    if not parts:
        return None
    return np.concatenate(parts), " ".join(texts)


def longform_wer(model, audio: np.ndarray, reference: str) -> dict:
    """WER/CER of a model (folder or Hub id) transcribing the recording long-form."""
    from ..transcribe import TranscribeOptions, Transcriber

    transcriber = Transcriber(model, TranscribeOptions(backend="transformers"))
    return text_metrics([transcriber.transcribe(audio).text], [reference])
