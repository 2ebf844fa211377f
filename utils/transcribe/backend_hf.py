"""Whisper through transformers: the checkpoint itself, decoded by a small loop of our own.

transformers' `generate` takes one prompt for a whole batch; the streams need one per row (each
its own previous text), a temperature fallback per row and the <|nospeech|> probability. The loop
here is OpenAI's greedy/sampling decoder (whisper/decoding.py): suppressed tokens, no blank at the
start, and the timestamp rules (timestamps in pairs, never decreasing, the first within 1 s, and a
timestamp whenever timestamps are jointly likelier than any text token), on the model's own
encoder, decoder and KV cache. It decodes what CTranslate2 decodes (tested on real weights).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE
from ..features import fill_generation_config, load_processor
from ..whisper_lang import abilities
from .timing import path_from_attention, words_from_path
from .vocab import MAX_INITIAL_TIMESTAMP_INDEX, build_vocab
from .windows import WINDOW

# transformers warns on every call about things that are deliberate here; its own loggers are
# filtered (public `logging` API), nothing else is touched.
NOISE = (
    "Both `max_new_tokens`",
    "together with generation-related arguments",
    "The attention mask is not set",
)


class _GenerateNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(n in record.getMessage() for n in NOISE)


def quiet_transformers() -> None:
    """Drop transformers' per-call generation notes that are expected here."""
    for name in ("transformers.generation.utils", "transformers.generation.configuration_utils"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _GenerateNoise) for f in logger.filters):
            logger.addFilter(_GenerateNoise())


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; anything else unchanged."""
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # the CTranslate2 backend runs without torch
        return "cpu"


@dataclass
class Encoded:
    """A batch of windows: their log-Mel features and encoder output."""

    features: object  # torch [B, n_mels, 3000]
    hidden: object  # torch [B, 1500, d_model]


def _cache_of(out):
    # The decoder's KV cache, under the name this transformers version gives it.
    return out["cache"] if "cache" in out else out["past_key_values"]


class TransformersBackend:
    """Whisper on transformers (`WhisperForConditionalGeneration`), on CPU or GPU."""

    name = "transformers"

    def __init__(self, model: str | Path, options):
        import torch
        from transformers import WhisperForConditionalGeneration

        quiet_transformers()
        self.torch = torch
        self.device = resolve_device(options.device)
        if options.cpu_threads:
            torch.set_num_threads(options.cpu_threads)
        self.dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        self.processor = load_processor(str(model), None, None)
        self.model = WhisperForConditionalGeneration.from_pretrained(
            str(model), dtype=self.dtype, attn_implementation="sdpa"
        )
        self.model.to(self.device).eval()
        tokenizer = self.processor.tokenizer
        generation = self.model.generation_config
        able = abilities(generation, tokenizer.get_vocab())
        fill_generation_config(generation, tokenizer, able)
        self.vocab = build_vocab(
            lambda t: tokenizer.convert_tokens_to_ids(t) if t in tokenizer.get_vocab() else None,
            able,
            lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
            generation.suppress_tokens or [],
            generation.begin_suppress_tokens or [],
        )
        self.model_language = getattr(generation, "language", None)  # a fine-tuned model's own
        self.alignment_heads = [
            tuple(h) for h in (getattr(generation, "alignment_heads", None) or [])
        ]
        decoder_args = inspect.signature(self.model.model.decoder.forward).parameters
        # transformers renamed the decoder's cache argument (past_key_values -> cache) in 5.2x.
        self.cache_arg = "cache" if "cache" in decoder_args else "past_key_values"
        self.generator = torch.Generator().manual_seed(0)  # temperature fallback: reproducible

    def languages(self) -> list[str]:
        """Language codes this checkpoint decodes (["en"] for an English-only one)."""
        return list(self.vocab.abilities.languages)

    def encode(self, chunks: list[np.ndarray]) -> Encoded:
        """Log-Mel windows (each chunk zero-padded to 30 s, as in training) and encoder output."""
        feats = self.processor.feature_extractor(
            [c[:WINDOW] for c in chunks], sampling_rate=SAMPLE_RATE, return_tensors="pt"
        ).input_features.to(self.device, self.dtype)
        with self.torch.inference_mode():
            hidden = self.model.model.encoder(feats).last_hidden_state
        return Encoded(feats, hidden)

    def detect_language(self, chunk: np.ndarray) -> str:
        """The spoken language of one window (English for an English-only checkpoint)."""
        if not self.vocab.abilities.multilingual:
            return "en"
        with self.torch.inference_mode():
            ids = self.model.detect_language(self.encode([chunk]).features)
        code = self.processor.tokenizer.convert_ids_to_tokens(int(ids.reshape(-1)[0]))
        return code[2:-2]

    def _decoder(self, ids, hidden, cache, **kwargs):
        return self.model.model.decoder(
            input_ids=ids,
            encoder_hidden_states=hidden,
            use_cache=True,
            **{self.cache_arg: cache},
            **kwargs,
        )

    def generate(
        self,
        encoded: Encoded,
        rows: list[int],
        prompts: list[list[int]],
        temperature: float,
        max_new_tokens: int,
    ):
        """(tokens without prompt and end, sum of log-probabilities, <|nospeech|> probability) per
        row; the prompts of one call have the same length (longform makes them so)."""
        torch, vocab = self.torch, self.vocab
        hidden = encoded.hidden[rows]
        ids = torch.tensor(prompts, device=self.device)
        sot_index = prompts[0].index(vocab.sot)
        with torch.inference_mode():
            out = self._decoder(ids, hidden, None)
            states = out.last_hidden_state
            first = self.model.proj_out(states[:, [sot_index, -1]]).float()
            no_speech = (
                first[:, 0].softmax(-1)[:, vocab.no_speech].cpu().numpy()
                if vocab.no_speech is not None
                else np.zeros(len(rows))
            )
            logits, cache = first[:, 1], _cache_of(out)
            generated = [[] for _ in rows]
            sum_logprob = torch.zeros(len(rows), device=self.device)
            done = torch.zeros(len(rows), dtype=torch.bool, device=self.device)
            for step in range(max_new_tokens):
                logits = self._apply_rules(logits, generated, step)
                logprobs = logits.log_softmax(-1)
                if temperature > 0:
                    probs = (logits / temperature).softmax(-1).cpu()
                    chosen = (
                        torch.multinomial(probs, 1, generator=self.generator)
                        .squeeze(1)
                        .to(self.device)
                    )
                else:
                    chosen = logits.argmax(-1)
                sum_logprob += torch.where(
                    done, 0.0, logprobs.gather(1, chosen[:, None]).squeeze(1)
                )
                for b, token in enumerate(chosen.tolist()):
                    if not done[b]:
                        generated[b].append(token)
                done |= chosen == vocab.eot
                if bool(done.all()):
                    break
                out = self._decoder(chosen[:, None], hidden, cache)
                cache = _cache_of(out)
                logits = self.model.proj_out(out.last_hidden_state[:, -1]).float()
        tokens = [g[:-1] if g and g[-1] == vocab.eot else g for g in generated]
        return list(zip(tokens, sum_logprob.tolist(), no_speech.tolist(), strict=True))

    def _apply_rules(self, logits, generated: list[list[int]], step: int):
        """OpenAI's logit filters: suppressed tokens, no blank start, timestamp rules."""
        _torch, vocab = self.torch, self.vocab
        tb, eot, neg = vocab.timestamp_begin, vocab.eot, float("-inf")
        logits = logits.clone()
        logits[:, list(vocab.suppress)] = neg
        logits[:, vocab.no_timestamps] = (
            neg  # we always decode with timestamps: they steer the seek
        )
        if step == 0:
            logits[:, list(vocab.begin_suppress)] = neg
            logits[:, :tb] = neg  # a window starts with a timestamp...
            logits[:, tb + MAX_INITIAL_TIMESTAMP_INDEX + 1 :] = neg  # ...within its first second
        for b, seq in enumerate(generated):
            last_ts = len(seq) >= 1 and seq[-1] >= tb
            penultimate_ts = len(seq) < 2 or seq[-2] >= tb
            if last_ts:
                if penultimate_ts:
                    logits[b, tb:] = neg  # a pair closed: text (or the end) follows
                else:
                    logits[b, :eot] = neg  # a timestamp opened: another timestamp, or the end
            stamps = [t for t in seq if t >= tb]
            if stamps:  # time never goes back
                bound = stamps[-1] if last_ts and not penultimate_ts else stamps[-1] + 1
                logits[b, tb:bound] = neg
        logprobs = logits.log_softmax(-1)
        timestamp_mass = logprobs[:, tb:].logsumexp(-1)
        best_text = logprobs[:, :tb].max(-1).values
        logits[timestamp_mass > best_text, :tb] = neg
        return logits

    def align(
        self,
        encoded: Encoded,
        row: int,
        sot_sequence: list[int],
        text: list[int],
        samples: int,
        offset: float,
    ):
        """(word, token count) pairs with times, from the alignment heads' cross-attention."""
        torch, vocab = self.torch, self.vocab
        if not self.alignment_heads:
            return []
        ids = torch.tensor(
            [[*sot_sequence, vocab.no_timestamps, *text, vocab.eot]], device=self.device
        )
        n = len(sot_sequence)
        self.model.set_attn_implementation("eager")  # attention weights need the eager kernels
        try:
            with torch.inference_mode():
                out = self._decoder(
                    ids, encoded.hidden[row : row + 1], None, output_attentions=True
                )
                logits = self.model.proj_out(out.last_hidden_state[0]).float()
                probs = logits[n : n + len(text), : vocab.eot].softmax(-1)
                token_probs = probs[torch.arange(len(text)), torch.tensor(text)].cpu().numpy()
                heads = [
                    out.cross_attentions[layer][0, head] for layer, head in self.alignment_heads
                ]
                # rows: <|notimestamps|> and the text (each attends while predicting the next)
                weights = torch.stack(heads)[:, n:-1].float().cpu().numpy()
        finally:
            self.model.set_attn_implementation("sdpa")
        text_indices, time_indices = path_from_attention(weights, samples // 160)
        return words_from_path(text, token_probs, text_indices, time_indices, vocab.decode, offset)
