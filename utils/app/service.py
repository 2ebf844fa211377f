"""What each request of the app does: input -> audio -> Transcript -> text + files, then cleanup.

Every request works in its own temporary folder, removed when it ends whatever happens, and the
file a person uploaded is deleted then too (Gradio would otherwise keep it in its cache). Bad input
of any kind ends the request with a message for the person, never the server.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..audio import SAMPLE_RATE, format_duration, load_audio
from ..config import coerce
from ..errors import AudioError, InputError
from ..transcribe import Transcriber, format_timestamp, write_outputs
from .links import download_media, fetch_failed, url_name

DETECT = "auto"  # the language menu's "detect the language" value


@dataclass(frozen=True)
class AppOptions:
    """How the app serves (decoding settings live in TranscribeOptions)."""

    # transcriptions running at once, all inputs together: one keeps a CPU or a small GPU busy
    # without requests slowing each other down; the rest wait in the queue
    concurrency: int = 1
    # requests allowed to wait in the queue; more are refused at once with "queue full"
    max_queue: int = 32
    # largest upload accepted, in bytes (an hour of 128 kbit/s mp3 is ~58 MB)
    max_file_size: int = 200 * 1024 * 1024
    # largest download the link box accepts, in bytes (an hour of audio-only YouTube is ~60 MB)
    max_download_bytes: int = 500 * 1024 * 1024
    # seconds a whole link download may take (a server trickling bytes is cut off)
    download_deadline: float = 300.0
    # seconds before a silent connection of the link box gives up
    url_timeout: float = 20.0
    # let the link box fetch from private and loopback addresses (local use only: on a public
    # link it would let strangers reach this machine's network)
    allow_private_links: bool = False
    # transcript files are served from Gradio's cache and deleted after this many seconds
    cache_seconds: int = 3600
    # title shown at the top of the page and in the browser tab
    title: str = "Whisper transcriber"

    def __post_init__(self):
        coerce(self)


def display_name(path: str | Path) -> str:
    """The file's name only: messages never show the server's directories."""
    return Path(path).name


def probe_duration(path: Path) -> float | None:
    """Duration in seconds from the file header (libsndfile: wav, flac, ogg, mp3), None if it
    cannot tell; lets an over-long upload be refused before it is decoded."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - any failure just means "ask ffmpeg instead"
        return None
    return info.duration if info.samplerate > 0 else None


def extract_audio(src: Path, workdir: Path, max_duration: float | None, name: str) -> Path:
    """Decode the audio track of a video (or any media) to a 16 kHz mono wav in workdir with
    ffmpeg; at most max_duration + 1 s is decoded, so an over-long file costs no more than that."""
    from ..audio import ffmpeg_exe

    out = workdir / "audio.wav"
    cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(src), "-vn", "-ac", "1"]
    cmd += ["-ar", str(SAMPLE_RATE)]
    if max_duration is not None:
        cmd += ["-t", f"{max_duration + 1:.3f}"]
    proc = subprocess.run([*cmd, str(out)], capture_output=True, text=True)
    if proc.returncode != 0 or not out.is_file():
        # ffmpeg names the file by its server path: say only its name
        reason = (proc.stderr.strip().splitlines() or ["ffmpeg failed"])[-1]
        reason = reason.replace(str(src), name).replace(f"{name}: ", "")
        if "does not contain any stream" in proc.stderr or "matches no streams" in proc.stderr:
            reason = "no audio stream in it: not an audio file, or a video without sound"
        raise AudioError(f"{name}: cannot extract audio ({reason})")
    return out


def transcript_text(result, timestamps: bool) -> str:
    """The transcript as shown: one line per segment, with times when asked."""
    if not timestamps:
        return result.text
    return "\n".join(
        f"[{format_timestamp(s.start)[3:]} → {format_timestamp(s.end)[3:]}] {s.text}"
        for s in result.segments
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


class TranscriptionService:
    """What each UI event calls, with cleanup."""

    def __init__(self, transcriber: Transcriber, options: AppOptions):
        self.transcriber = transcriber
        self.options = options
        self.max_duration = transcriber.options.max_duration

    def run(
        self, kind: str, value, language: str, task: str, timestamps: bool, words: bool = False
    ):
        """Transcribe one input; return (transcript text, [txt, srt, vtt paths], summary).

        Raises InputError/AudioError (PipelineError) with a message for the person; the caller
        turns it into gr.Error. The request's folder and the uploaded file are removed in every case.
        """
        started = time.perf_counter()
        workdir = Path(tempfile.mkdtemp(prefix="whisper-app-"))
        try:
            audio, name = self.load(kind, value, workdir)
            asked = None if language in (None, "", DETECT) else language
            overrides = {
                "task": task or "transcribe",
                "timestamps": bool(timestamps),
                "word_timestamps": bool(words),
            }
            if asked is not None:
                overrides["language"] = asked
            result = self.transcriber.transcribe(audio, name=name, **overrides)
            files = write_outputs(
                result, self.output_dir(), Path(name).stem or "transcript", words=bool(words)
            )
            source = " (detected)" if asked is None and self.transcriber.language is None else ""
            summary = (
                f"**{name}** · {format_duration(result.duration)} of audio · language "
                f"`{result.language}`{source} · {result.task} · {_plural(len(result.segments), 'segment')} "
                f"· {time.perf_counter() - started:.1f} s ({result.info['backend']})"
            )
            return transcript_text(result, bool(timestamps)), [str(f) for f in files], summary
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            if kind != "url" and value:
                _remove_upload(Path(value))

    def load(self, kind: str, value, workdir: Path):
        """The waveform and a display name for one input of the given kind."""
        if kind == "url":
            media = download_media(value, workdir, self.options, self.max_duration)
            name = url_name(value.strip())
            try:
                wav = extract_audio(media, workdir, self.max_duration, name)
            except AudioError:
                raise fetch_failed(value.strip()) from None  # not media: the same one message
            return load_audio(wav, name=name, max_seconds=self.max_duration), name
        if not value:
            raise InputError(
                {
                    "microphone": "Record something first (press the microphone button).",
                    "audio": "Upload an audio file first.",
                    "video": "Upload a video file first.",
                }[kind]
            )
        path = Path(value)
        name = display_name(path)
        if not path.is_file():  # uploads are deleted once transcribed
            raise InputError(
                f"{name}: upload it again (uploads are removed after their transcription)"
            )
        if kind == "microphone" and path.is_file() and path.stat().st_size == 0:
            raise AudioError(f"{name}: the recording is empty")
        duration = probe_duration(path)
        if duration is None or kind == "video":
            # not a format libsndfile reads (video, m4a, webm...): ffmpeg, bounded by max_duration
            wav = extract_audio(path, workdir, self.max_duration, name)
            return load_audio(wav, name=name, max_seconds=self.max_duration), name
        if self.max_duration is not None and duration > self.max_duration:
            raise AudioError(
                f"{name}: {format_duration(duration)} of audio is over the limit of {format_duration(self.max_duration)}"
            )
        return load_audio(path, name=name, max_seconds=self.max_duration), name

    def output_dir(self) -> Path:
        """A fresh directory inside Gradio's cache: Gradio serves and later deletes its files."""
        from gradio.utils import get_upload_folder

        return Path(get_upload_folder()) / "transcripts" / uuid.uuid4().hex


def _remove_upload(path: Path) -> None:
    """Delete an uploaded file (and its one-file folder) from Gradio's cache once used."""
    from gradio.utils import get_upload_folder

    cache = Path(get_upload_folder()).resolve()
    try:
        path = path.resolve()
    except OSError:
        return
    if cache in path.parents and "transcripts" not in path.relative_to(cache).parts:
        path.unlink(missing_ok=True)
        if path.parent != cache and not any(path.parent.iterdir()):
            path.parent.rmdir()
