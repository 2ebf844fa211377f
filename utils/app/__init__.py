"""Notebook 03's app: a Gradio transcriber for recordings, files, videos and links, with
TXT/SRT/VTT downloads (`python -m utils.app --model DIR`)."""

from .links import check_url, download_media
from .service import DETECT, AppOptions, TranscriptionService
from .ui import API_NAMES, build_app, check_app, launch_app

__all__ = [
    "API_NAMES",
    "DETECT",
    "AppOptions",
    "TranscriptionService",
    "build_app",
    "check_app",
    "check_url",
    "download_media",
    "launch_app",
]
