"""The errors this package raises for problems a person can fix.

Every one derives from `PipelineError`, so a command-line tool catches that one class, prints the
message (which names the file, row, parameter or checkpoint at fault) and exits with status 2,
without a traceback. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class PipelineError(ValueError):
    """A problem with input, settings or data that the user can fix; the message says which."""


class ConfigError(PipelineError):
    """A parameter with a bad value or type; the message names the field (`TrainConfig.lora`)."""


class SourceError(PipelineError):
    """A source that cannot be read as asked; the message names the file, row, column or option."""


class AudioError(PipelineError):
    """An input that cannot be turned into audio; the message names the file."""


class TooLongError(AudioError):
    """Audio longer than the limit; only the limit's worth was decoded. `seconds` is at least that."""

    def __init__(self, message: str, seconds: float):
        super().__init__(message)
        self.seconds = seconds


class NoSpeechError(AudioError):
    """The audio holds only silence (or is too short to hold speech); the message names the file."""


class StoreError(PipelineError):
    """A feature store that is missing, incomplete, corrupted, locked or built with other settings."""


class StoreMismatchError(StoreError):
    """The store was built for another model (mel bins, tokenizer) or language/task."""


class ModelError(PipelineError):
    """A checkpoint that cannot be loaded, or cannot do what was asked (a language, a task)."""


class InputError(PipelineError):
    """Input the app refuses, with a message meant for the person who gave it."""
