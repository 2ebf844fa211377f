"""The token facts decoding needs, read from a loaded model's tokenizer and generation config.

Both backends build one `Vocab`, so prompts, timestamp rules, segment splitting and word splitting
are written once, for every checkpoint of the family (multilingual, English-only, large-v3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..whisper_lang import Abilities

TIME_PRECISION = 0.02  # seconds per timestamp token (<|0.00|>, <|0.02|>, ...)
SAMPLES_PER_TIMESTAMP = 320  # 20 ms at 16 kHz: two 10 ms mel frames per encoder position
# The first timestamp may be at most 1.00 s (OpenAI's max_initial_timestamp).
MAX_INITIAL_TIMESTAMP_INDEX = 50
# Previous text in a prompt: at most half the decoder's 448 positions, minus <|startofprev|>.
MAX_PROMPT_TOKENS = 223
MAX_LENGTH = 448  # the decoder's positions, prompt included


@dataclass(frozen=True)
class Vocab:
    """Special token ids and text decoding of one checkpoint."""

    eot: int  # <|endoftext|>
    sot: int  # <|startoftranscript|>
    sot_prev: int  # <|startofprev|>: previous text follows
    no_timestamps: int  # <|notimestamps|>; the timestamps follow it
    no_speech: int | None  # <|nospeech|> (<|nocaptions|> in v1/v2 tokenizers)
    task_ids: dict  # {"transcribe": id, "translate": id}
    language_ids: dict  # {"sv": id, ...}
    abilities: Abilities  # what the checkpoint can decode
    suppress: tuple[int, ...]  # never sampled (non-speech symbols, control tokens)
    begin_suppress: tuple[int, ...]  # never the first token (a bare space, end of text)
    decode: Callable[[list[int]], str]  # token ids -> text (special tokens dropped)

    @property
    def timestamp_begin(self) -> int:
        return self.no_timestamps + 1

    def sot_sequence(self, language: str | None, task: str) -> list[int]:
        """<|startoftranscript|>[<|lang|><|task|>]: English-only checkpoints take neither."""
        if not self.abilities.multilingual:
            return [self.sot]
        return [self.sot, self.language_ids[language], self.task_ids[task]]

    def prompt(self, previous: list[int], language: str | None, task: str) -> list[int]:
        """The decoder prompt: previous text (if any) after <|startofprev|>, then the sot sequence."""
        head = [self.sot_prev, *previous[-MAX_PROMPT_TOKENS:]] if previous else []
        return [*head, *self.sot_sequence(language, task)]

    def text_tokens(self, tokens: list[int]) -> list[int]:
        """The text tokens of a decoded sequence (no timestamps, no specials)."""
        return [t for t in tokens if t < self.eot]


def build_vocab(
    token_id: Callable[[str], int | None], abilities: Abilities, decode, suppress, begin_suppress
) -> Vocab:
    """A Vocab from a token -> id lookup (None when absent)."""
    no_speech = token_id("<|nospeech|>")
    if no_speech is None:
        no_speech = token_id("<|nocaptions|>")
    return Vocab(
        eot=token_id("<|endoftext|>"),
        sot=token_id("<|startoftranscript|>"),
        sot_prev=token_id("<|startofprev|>"),
        no_timestamps=token_id("<|notimestamps|>"),
        no_speech=no_speech,
        task_ids={t: token_id(f"<|{t}|>") for t in ("transcribe", "translate")},
        language_ids={c: token_id(f"<|{c}|>") for c in abilities.languages},
        abilities=abilities,
        suppress=tuple(sorted(set(suppress))),
        begin_suppress=tuple(begin_suppress),
        decode=decode,
    )
