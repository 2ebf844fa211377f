"""Whisper's languages and tasks, the split names, and what a checkpoint can decode.

One module owns these facts so that every stage reads them the same way:

- a language is given as a code ("sv"), an English name ("swedish") or a token ("<|sv|>");
  `language_code` turns any of them into the code, and None/""/"auto"/"detect" into None;
- a task is "transcribe" or "translate" (speech in any language -> English text);
- a corpus has the splits train, dev and test (Hub datasets' "validation" is our "dev");
- a checkpoint's `Abilities` (from its generation config, or its vocabulary when the generation
  config predates `lang_to_id`) say which languages and tasks it can decode: an English-only
  checkpoint (`*.en`) decodes English only, without language or task tokens in its prompt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigError, ModelError

TRANSCRIBE = "transcribe"  # speech -> text in the spoken language
TRANSLATE = "translate"  # speech in any language -> English text
TASKS = (TRANSCRIBE, TRANSLATE)

TRAIN, DEV, TEST = "train", "dev", "test"
DEFAULT_SPLITS = (TRAIN, DEV, TEST)  # what a Common Voice release ships for training and evaluation
# Common Voice practice (the course lab, Mozilla's fine-tuning blueprint): train on train + dev,
# report WER on test. Test sets stay per source and are never mixed into training.
TRAIN_SPLITS = (TRAIN, DEV)
EVAL_SPLIT = TEST
# Hub datasets call the held-out dev split "validation"; one name keeps store paths uniform.
SPLIT_ALIASES = {"validation": DEV, "valid": DEV, "val": DEV, "eval": DEV}

# Values that mean "no language given: detect it" in parameters, the CLI and the app's menu.
DETECT_WORDS = ("", "auto", "detect", "none", "null")


def _tables():
    # transformers keeps OpenAI's language table (whisper/tokenizer.py), 100 entries with "yue".
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    return LANGUAGES, TO_LANGUAGE_CODE


def language_code(language: str | None, field: str = "language") -> str | None:
    """Whisper's code for a language given as a code, an English name or a token ("<|sv|>");
    None for None, "" and "auto"/"detect". Raises ConfigError naming `field` otherwise."""
    if language is None:
        return None
    key = str(language).strip().lower()
    if key in DETECT_WORDS:
        return None
    key = key.removeprefix("<|").removesuffix("|>")
    languages, to_code = _tables()
    if key in languages:
        return key
    if key in to_code:
        return to_code[key]
    raise ConfigError(
        f"{field}={language!r} is not a Whisper language: use a code such as 'sv' or a name such "
        "as 'swedish' (None to detect it)"
    )


def language_name(code: str | None) -> str:
    """'sv' -> 'Swedish'; None -> 'any language'."""
    if code is None:
        return "any language"
    return _tables()[0].get(code, code).title()


def check_task(task: str | None, field: str = "task") -> str | None:
    """The task unchanged when it is one of TASKS (or None); ConfigError naming `field` otherwise."""
    if task is not None and task not in TASKS:
        raise ConfigError(f"{field}={task!r} must be one of {TASKS}")
    return task


def normalize_split(split: str) -> str:
    """Map Hub/user split names onto ours ("validation" -> "dev"); others pass through lowercased."""
    key = str(split).strip().lower()
    return SPLIT_ALIASES.get(key, key)


@dataclass(frozen=True)
class Abilities:
    """What a checkpoint can decode."""

    multilingual: bool  # False for English-only checkpoints (*.en): no language or task tokens
    languages: tuple[str, ...]  # language codes it has tokens for (("en",) when English-only)
    tasks: tuple[str, ...]  # ("transcribe", "translate"), or ("transcribe",) when English-only

    def check(self, model: str, language: str | None, task: str | None) -> tuple[str | None, str]:
        """(language code, task) for a request to `model`, or ModelError naming the checkpoint.

        English-only checkpoints accept language None/"en"/"english" and task transcribe only.
        """
        code = language_code(language)
        task = check_task(task) or TRANSCRIBE
        if not self.multilingual:
            if code not in (None, "en"):
                raise ModelError(
                    f"{model} is an English-only checkpoint: it cannot decode "
                    f"language={language!r}; use a multilingual Whisper (no '.en' in its name)"
                )
            if task != TRANSCRIBE:
                raise ModelError(
                    f"{model} is an English-only checkpoint: it can only transcribe English, "
                    f"not task={task!r}; use a multilingual Whisper to translate"
                )
            return "en", TRANSCRIBE
        if code is not None and code not in self.languages:
            raise ModelError(f"{model} has no <|{code}|> token: it cannot decode {language!r}")
        return code, task

    def prefix_settings(self, language: str | None, task: str) -> tuple[str | None, str | None]:
        """(language, task) to give `WhisperTokenizer.set_prefix_tokens`: an English-only
        checkpoint's labels start <|startoftranscript|><|notimestamps|>, with neither token."""
        return (language, task) if self.multilingual else (None, None)


def abilities(generation_config, vocab: Mapping[str, int] | None = None) -> Abilities:
    """A checkpoint's Abilities from its generation config; when that predates `lang_to_id`
    (and `is_multilingual`), from the language tokens its vocabulary holds."""
    lang_to_id = getattr(generation_config, "lang_to_id", None) or {}
    multilingual = getattr(generation_config, "is_multilingual", None)
    if lang_to_id:
        codes = [token.removeprefix("<|").removesuffix("|>") for token in lang_to_id]
        multilingual = True if multilingual is None else bool(multilingual)
    else:
        known = _tables()[0]
        codes = [c for c in known if vocab is not None and f"<|{c}|>" in vocab]
        if multilingual is None:
            # An old config: the vocabulary tells. English-only vocabularies (51864 ids) hold the
            # language tokens too, but one id fewer than the multilingual 51865.
            multilingual = bool(codes) and vocab is not None and len(vocab) >= 51865
    if not multilingual:
        return Abilities(False, ("en",), (TRANSCRIBE,))
    return Abilities(True, tuple(codes), TASKS)
