"""Whisper on a CTranslate2 export (loaded by faster-whisper), the faster engine on a CPU.

The windows, features and prompts are the transformers backend's: CTranslate2's `generate` takes a
prompt per row and applies Whisper's timestamp rules itself; its `align` gives the alignment path
for word timestamps. (faster-whisper's own batched pipeline pads features with zeros instead of
the log-Mel of silence the model was trained on; its feature extractor is used here with Whisper's
padding.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..whisper_lang import abilities
from .export import export_ctranslate2, find_ct2_export
from .timing import words_from_path
from .vocab import MAX_INITIAL_TIMESTAMP_INDEX, MAX_LENGTH, build_vocab
from .windows import WINDOW


@dataclass
class Encoded:
    """A batch of windows, encoded once: every decoding attempt and alignment of a window reuses
    it (the encoder is most of Whisper's cost on a CPU: ~0.4 s a window for tiny on 2 cores)."""

    hidden: np.ndarray  # [B, 1500, d_model] encoder output, in host memory to pick rows from


class CTranslate2Backend:
    """Whisper on CTranslate2 through faster-whisper's model loader and feature extractor."""

    name = "ctranslate2"

    def __init__(self, model: str | Path, options):
        import ctranslate2
        from faster_whisper import WhisperModel

        self.ctranslate2 = ctranslate2
        # No export yet: convert once (next to a local checkpoint, in a cache for a Hub id).
        self.export = find_ct2_export(model) or export_ctranslate2(model)
        device, index = options.device, 0
        if device == "auto":  # asked of CTranslate2, not torch: this backend never imports torch
            device = "cuda" if ctranslate2.get_cuda_device_count() else "cpu"
        if ":" in device:
            device, index = device.split(":")[0], int(device.split(":")[1])
        compute_type = options.compute_type
        if compute_type == "default" and device == "cuda":
            compute_type = "float16"  # as the transformers backend runs on a GPU
        self.whisper = WhisperModel(
            str(self.export),
            device=device,
            device_index=index,
            compute_type=compute_type,
            cpu_threads=options.cpu_threads or os.cpu_count() or 1,
            local_files_only=True,
        )
        self.ct2 = self.whisper.model
        ctranslate2.set_random_seed(0)  # temperature fallback: reproducible
        self.num_beams = options.num_beams
        tokenizer = self.whisper.hf_tokenizer
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        config = self._export_config()
        able = (
            abilities(None, vocab)
            if self.ct2.is_multilingual
            else abilities(_english_only(), vocab)
        )
        self.vocab = build_vocab(
            tokenizer.token_to_id,
            able,
            lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
            config.get("suppress_ids", []),
            config.get("suppress_ids_begin", []),
        )
        # A fine-tuned model's own language, from the generation config kept beside the export.
        self.model_language = self._read("generation_config.json").get("language")

    def _read(self, name: str) -> dict:
        import json

        try:
            return json.loads((Path(self.export) / name).read_text())
        except (OSError, ValueError):
            return {}

    def _export_config(self) -> dict:
        return self._read("config.json")

    def languages(self) -> list[str]:
        """Language codes this export decodes (["en"] for an English-only one)."""
        return list(self.vocab.abilities.languages)

    def encode(self, chunks: list[np.ndarray]) -> Encoded:
        """Log-Mel windows, each chunk zero-padded to 30 s before the STFT as transformers'
        extractor does, so padding frames hold the log-Mel of silence (equal within 3e-5)."""
        fe = self.whisper.feature_extractor
        feats = [
            fe(c[:WINDOW], padding=WINDOW - len(c[:WINDOW]))[:, : WINDOW // fe.hop_length]
            for c in chunks
        ]
        features = self.ctranslate2.StorageView.from_array(
            np.ascontiguousarray(np.stack(feats), dtype=np.float32)
        )
        return Encoded(np.array(self.ct2.encode(features, to_cpu=True)))

    def _view(self, encoded: Encoded, rows: list[int]):
        return self.ctranslate2.StorageView.from_array(np.ascontiguousarray(encoded.hidden[rows]))

    def detect_language(self, chunk: np.ndarray) -> str:
        """The spoken language of one window (English for an English-only checkpoint)."""
        if not self.vocab.abilities.multilingual:
            return "en"
        best_token, _prob = self.ct2.detect_language(self._view(self.encode([chunk]), [0]))[0][0]
        return best_token[2:-2]

    def generate(
        self,
        encoded: Encoded,
        rows: list[int],
        prompts: list[list[int]],
        temperature: float,
        max_new_tokens: int,
    ):
        """(tokens without prompt and end, sum of log-probabilities, <|nospeech|> probability) per row."""
        # CTranslate2 needs <|startoftranscript|> at one position in a batch: rows without
        # previous text (the start of a stream, or one reset after a doubtful window) go apart.
        groups: dict[int, list[int]] = {}
        for i, prompt in enumerate(prompts):
            groups.setdefault(prompt.index(self.vocab.sot), []).append(i)
        out: list = [None] * len(rows)
        for members in groups.values():
            results = self._generate(
                encoded,
                [rows[i] for i in members],
                [prompts[i] for i in members],
                temperature,
                max_new_tokens,
            )
            for i, result in zip(members, results, strict=True):
                out[i] = result
        return out

    def _generate(self, encoded, rows, prompts, temperature, max_new_tokens):
        if temperature > 0:
            sampling = {"beam_size": 1, "sampling_topk": 0, "sampling_temperature": temperature}
        else:
            sampling = {"beam_size": self.num_beams}
        results = self.ct2.generate(
            self._view(encoded, rows),
            prompts,
            # CTranslate2 decodes min(max_length / 2, max_length - prompt) new tokens (OpenAI's
            # half-context cap), so this max_length yields max_new_tokens, as the other backend.
            max_length=min(
                MAX_LENGTH, max(2 * max_new_tokens, max(map(len, prompts)) + max_new_tokens)
            ),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],  # the export's suppress list, from the generation config
            max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX,
            **sampling,
        )
        out = []
        for r in results:
            tokens = [t for t in r.sequences_ids[0] if t != self.vocab.eot]
            # CTranslate2 scores a sequence by its log-probability (end token included) over its
            # length (end token not counted): the sum is the score times that length.
            out.append((tokens, r.scores[0] * len(tokens), r.no_speech_prob))
        return out

    def align(
        self,
        encoded: Encoded,
        row: int,
        sot_sequence: list[int],
        text: list[int],
        samples: int,
        offset: float,
    ):
        """(word, token count) pairs with times, from CTranslate2's alignment of the text."""
        result = self.ct2.align(
            self._view(encoded, [row]),
            sot_sequence,
            [text],
            [samples // 160],
            median_filter_width=7,
        )[0]
        if not result.alignments:
            return []
        pairs = np.array(result.alignments)
        return words_from_path(
            text,
            np.asarray(result.text_token_probs),
            pairs[:, 0],
            pairs[:, 1],
            self.vocab.decode,
            offset,
        )


def _english_only():
    class Config:  # what an English-only generation config says (abilities reads these)
        is_multilingual = False
        lang_to_id = None

    return Config()
