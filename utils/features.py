"""Whisper's log-Mel features, computed exactly but stored compactly, and its token labels.

Whisper's feature extractor pads every clip with zeros to 30 seconds before computing an 80 (or
128) x 3000 log-Mel window. Most of that window is padding, and after Whisper's normalisation every
padding frame holds the same value: log10 of the floor 1e-10 (= -10), clamped to (max - 8), then
mapped x -> (x + 4) / 4. So we compute only the frames that see audio (plus enough trailing zeros
that their STFT windows match the padded window's), keep the single pad value, and rebuild the full
window when training. The kept frames are the extractor's own numbers, stored as float16.
"""

from __future__ import annotations

import numpy as np
import torch

from .audio import SAMPLE_RATE
from .errors import ModelError

N_FFT = 400  # 25 ms STFT window at 16 kHz
HOP_LENGTH = 160  # 10 ms hop: 100 frames a second
CHUNK_LENGTH = 30  # seconds in one Whisper input window
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a 30-second chunk
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 frames in a mel window
MAX_LABEL_TOKENS = 448  # the decoder's max_target_positions, prefix tokens included
LOG_FLOOR = -10.0  # log10 of the 1e-10 power floor Whisper clamps to
# A frame's centred STFT window reaches N_FFT // 2 = 200 samples past its centre, so 400 trailing
# zeros make the last frame that touches audio see exactly the zeros of the 30 s padded window.
TAIL_ZEROS = 2 * (N_FFT // 2)


def kept_frames(n_samples: int) -> int:
    """Number of frames whose STFT window overlaps the audio (the rest are pure padding)."""
    if n_samples + TAIL_ZEROS >= N_SAMPLES:
        return N_FRAMES
    # frame i is centred on sample i * HOP_LENGTH and sees samples from there - N_FFT // 2
    return (n_samples + N_FFT // 2 - 1) // HOP_LENGTH + 1


# Float32 tensors of the mel filter banks seen so far, by the filters' bytes: converting them for
# every clip would cost more than the STFT. (Kept here, not on the extractor: an attribute there
# would end up in its JSON and break save_pretrained.)
_FILTERS: dict[bytes, torch.Tensor] = {}


def _mel_filters(feature_extractor) -> torch.Tensor:
    filters = np.ascontiguousarray(feature_extractor.mel_filters, dtype=np.float32)
    key = filters.tobytes()
    if key not in _FILTERS:
        _FILTERS[key] = torch.from_numpy(filters)
    return _FILTERS[key]


def compact_log_mel(audio: np.ndarray, feature_extractor) -> tuple[np.ndarray, float]:
    """Return (frames, pad_value): the float16 [n_mels, n] frames that carry audio, and the value
    of every padding frame, so that `expand_log_mel` equals `feature_extractor(audio)` exactly
    (within float16 rounding). Audio longer than 30 s is truncated, as the extractor does.
    """
    audio = np.asarray(audio, dtype=np.float32)[:N_SAMPLES]
    n_keep = kept_frames(len(audio))
    padded_len = N_SAMPLES if n_keep == N_FRAMES else len(audio) + TAIL_ZEROS
    wave = torch.zeros(padded_len, dtype=torch.float32)
    wave[: len(audio)] = torch.from_numpy(audio)
    window = torch.hann_window(N_FFT)
    stft = torch.stft(wave, N_FFT, HOP_LENGTH, window=window, return_complex=True)
    power = stft[:, :n_keep].abs() ** 2
    log_spec = torch.clamp(_mel_filters(feature_extractor).T @ power, min=1e-10).log10()
    # Padding frames hold LOG_FLOOR, which takes part in the window's max when there are any.
    top = log_spec.max().item() if n_keep == N_FRAMES else max(log_spec.max().item(), LOG_FLOOR)
    floor = top - 8.0
    frames = (torch.clamp(log_spec, min=floor) + 4.0) / 4.0
    pad_value = (max(LOG_FLOOR, floor) + 4.0) / 4.0
    return frames.numpy().astype(np.float16), float(pad_value)


def expand_log_mel(
    frames: np.ndarray, pad_value: float, n_frames: int = N_FRAMES, out: np.ndarray | None = None
) -> np.ndarray:
    """Rebuild the full float32 [n_mels, n_frames] window from compact frames and the pad value,
    into `out` when given (a row of a batch: the training collator fills its batch this way)."""
    if out is None:
        out = np.empty((frames.shape[0], n_frames), dtype=np.float32)
    n = min(frames.shape[1], n_frames)
    # One pass: the frames converted float16 -> float32 in place, then the pad value once over
    # the rest (no full-window fill that is then overwritten).
    out[:, :n] = frames[:, :n]
    out[:, n:] = pad_value
    return out


# Speech is where a 20 ms frame is within 35 dB of the clip's loudest and above -60 dBFS: the
# breath-quiet lead-in and tail of a recording are not speech, quiet consonants inside are.
SPEECH_BELOW_PEAK_DB = 35.0
SPEECH_FLOOR_DBFS = -60.0
SPEECH_FRAME = SAMPLE_RATE // 50  # 20 ms, Whisper's timestamp step


def speech_bounds(audio: np.ndarray) -> tuple[float, float]:
    """(start, end) of the speech in a clip, in seconds on Whisper's 20 ms grid; the whole clip
    when no frame stands out (silence is skipped before, this is for timestamp labels)."""
    n = len(audio) // SPEECH_FRAME
    if n == 0:
        return 0.0, len(audio) / SAMPLE_RATE
    frames = np.asarray(audio[: n * SPEECH_FRAME], dtype=np.float64).reshape(n, SPEECH_FRAME)
    db = 20 * np.log10(np.maximum(np.sqrt((frames**2).mean(axis=1)), 1e-10))
    loud = np.flatnonzero((db >= db.max() - SPEECH_BELOW_PEAK_DB) & (db >= SPEECH_FLOOR_DBFS))
    if loud.size == 0:
        return 0.0, n * SPEECH_FRAME / SAMPLE_RATE
    return loud[0] * 0.02, (loud[-1] + 1) * 0.02


def label_ids(tokenizer, text: str) -> list[int]:
    """Token ids of a transcript with the tokenizer's language/task prefix and <|endoftext|>.

    The tokenizer must have its prefix set (`tokenizer.set_prefix_tokens(language=..., task=...)`,
    or `load_processor`); the ids then start with <|startoftranscript|><|lang|><|task|><|notimestamps|>.
    """
    return tokenizer(text).input_ids


def load_processor(model: str, language: str | None = None, task: str | None = "transcribe"):
    """A checkpoint's Whisper processor (feature extractor + tokenizer) with the label prefix set
    for `language` and `task` (both None: <|startoftranscript|><|notimestamps|>, what an
    English-only checkpoint was trained with). Raises ModelError naming the checkpoint."""
    from transformers import WhisperProcessor

    try:
        processor = WhisperProcessor.from_pretrained(str(model))
    except Exception as err:  # noqa: BLE001 - missing files, no network, not a Whisper...
        raise ModelError(
            f"model {model!r}: cannot load its Whisper feature extractor/tokenizer ({err}). Give a "
            "Hub id (needs the network or the HF cache) or a local checkpoint directory."
        ) from err
    try:
        processor.tokenizer.set_prefix_tokens(
            language=language, task=task, predict_timestamps=False
        )
    except ValueError as err:
        raise ModelError(f"model {model!r}: language {language!r} / task {task!r}: {err}") from None
    return processor


def load_checkpoint(model: str):
    """(processor, abilities) of a checkpoint without loading its weights: its Whisper processor
    (label prefix not set yet) and what it can decode (utils.whisper_lang.Abilities, from its
    generation config, or its vocabulary when that config predates `lang_to_id`)."""
    from transformers import GenerationConfig

    from .whisper_lang import abilities

    processor = load_processor(model, None, None)
    try:
        generation = GenerationConfig.from_pretrained(str(model))
    except OSError:  # no generation_config.json: an old checkpoint; the vocabulary decides
        generation = None
    return processor, abilities(generation, processor.tokenizer.get_vocab())


def set_label_prefix(processor, abilities, language: str | None, task: str) -> list[int]:
    """Set the tokenizer's label prefix for a (checked) language and task; return its ids.
    English-only checkpoints get <|startoftranscript|><|notimestamps|>, what they were trained on."""
    prefix_language, prefix_task = abilities.prefix_settings(language, task)
    processor.tokenizer.set_prefix_tokens(
        language=prefix_language, task=prefix_task, predict_timestamps=False
    )
    return list(processor.tokenizer.prefix_tokens)


def fill_generation_config(generation, tokenizer, abilities) -> None:
    """Give a generation config what transformers' Whisper `generate` looks up, when the
    checkpoint's predates it (no lang_to_id/task_to_id/is_multilingual): the ids come from its
    own tokenizer, so `generate(language=..., task=...)` works on old checkpoints too."""
    ids = tokenizer.convert_tokens_to_ids
    if getattr(generation, "is_multilingual", None) is None:
        generation.is_multilingual = abilities.multilingual
    if abilities.multilingual and not getattr(generation, "lang_to_id", None):
        generation.lang_to_id = {f"<|{c}|>": ids(f"<|{c}|>") for c in abilities.languages}
    if abilities.multilingual and not getattr(generation, "task_to_id", None):
        generation.task_to_id = {t: ids(f"<|{t}|>") for t in abilities.tasks}
    if getattr(generation, "no_timestamps_token_id", None) is None:
        generation.no_timestamps_token_id = ids("<|notimestamps|>")
