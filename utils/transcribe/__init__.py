"""Notebook 03's engine: transcribe or translate audio of any length with a Whisper checkpoint,
on transformers or CTranslate2, and write subtitles (`python -m utils.transcribe`)."""

from ..errors import NoSpeechError
from .backend_hf import resolve_device
from .export import export_ctranslate2, find_ct2_export
from .options import BACKENDS, STRATEGIES, TranscribeOptions
from .subtitles import format_timestamp, to_srt, to_txt, to_vtt, write_outputs
from .timing import Word
from .transcriber import Segment, Transcriber, Transcript, clean_segments
from .windows import WINDOW_SECONDS, frame_energy_db, plan_streams, plan_windows

__all__ = [
    "BACKENDS",
    "STRATEGIES",
    "WINDOW_SECONDS",
    "NoSpeechError",
    "Segment",
    "TranscribeOptions",
    "Transcriber",
    "Transcript",
    "Word",
    "clean_segments",
    "export_ctranslate2",
    "find_ct2_export",
    "format_timestamp",
    "frame_energy_db",
    "plan_streams",
    "plan_windows",
    "resolve_device",
    "to_srt",
    "to_txt",
    "to_vtt",
    "write_outputs",
]
