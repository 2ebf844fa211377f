"""A Gradio app that transcribes (or translates) microphone recordings, audio and video files, and
YouTube or direct media links with any Whisper checkpoint, and hands out TXT/SRT/VTT files.

    python -m utils.app --model runs/model            # http://127.0.0.1:7860
    python -m utils.app --model openai/whisper-small --share

Every request works in its own temporary directory, removed when the request ends whatever
happens; the transcript files it returns are written into Gradio's cache, which Gradio serves and
deletes (after `AppOptions.cache_seconds`, and all of it when the server stops). Bad input of any
kind ends the request with a message in the UI (and, for API clients, in the exception), never
the server. The URL box takes http(s) links only, so nothing on the server's disk can be read
through it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path

from .audio import SAMPLE_RATE, AudioError, ffmpeg_exe, load_audio
from .transcription import (
    TranscribeOptions,
    Transcriber,
    export_ctranslate2,
    format_duration,
    format_timestamp,
    language_choices,
    write_outputs,
)

ALLOWED_URL_SCHEMES = ("http", "https")
DETECT = "auto"  # dropdown value for "detect the language"
# api_name of each event, so gradio_client can call them: client.predict(..., api_name="/<name>")
API_MICROPHONE = "transcribe_microphone"
API_AUDIO = "transcribe_audio"
API_VIDEO = "transcribe_video"
API_URL = "transcribe_url"


class InputError(ValueError):
    """Input the app refuses, with a message meant for the person who gave it."""


@dataclass(frozen=True)
class AppOptions:
    """Serving settings of the app (decoding settings live in TranscribeOptions)."""

    # Transcriptions running at once, all inputs together: one keeps a CPU or a small GPU busy
    # without requests slowing each other down; the rest wait in the queue.
    concurrency: int = 1
    # Requests allowed to wait in the queue; more are refused at once with "queue full".
    max_queue: int = 32
    # Largest download the URL box accepts, in bytes (an hour of audio-only YouTube is ~60 MB).
    max_download_bytes: int = 500 * 1024 * 1024
    # Seconds before a silent connection of the URL box's downloader gives up.
    url_timeout: float = 20.0
    # Transcript files are served from Gradio's cache and deleted after this many seconds.
    cache_seconds: int = 3600
    # Title shown at the top of the page and in the browser tab.
    title: str = "Whisper transcriber"


# --------------------------------------------------------------------------------------------
# Inputs


def display_name(path: str | Path) -> str:
    """The file's name only: messages never show the server's directories."""
    return Path(path).name


def check_url(url: str | None) -> str:
    """Return the URL stripped, or raise InputError unless it is an http(s) link with a host.

    file://, ftp://, data:, javascript:, bare or absolute local paths and anything else are
    refused before any download tool sees them.
    """
    url = (url or "").strip()
    if not url:
        raise InputError("Paste a link first (YouTube or a direct http(s) link to a media file).")
    parsed = urllib.parse.urlsplit(url)
    scheme = parsed.scheme.lower()
    if scheme not in ALLOWED_URL_SCHEMES:
        what = f"'{scheme}://' links" if scheme else "local paths or links without http(s)://"
        raise InputError(f"Only http:// and https:// links are accepted, not {what}: {url[:200]}")
    if not parsed.hostname:
        raise InputError(f"The link has no host name: {url[:200]}")
    return url


def _clean_ytdlp_message(err: Exception) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # yt-dlp colours its messages
    text = text.removeprefix("ERROR: ").split(" (caused by ")[0]  # the cause repeats the text
    return re.sub(r"^\[[\w:]+\] [^:]*: ", "", text).strip()  # "[generic] x: " prefix


def download_media(
    url: str, workdir: Path, options: AppOptions, max_duration: float | None
) -> Path:
    """Download the audio of a YouTube page or a direct media link into workdir with yt-dlp.

    Raises InputError with yt-dlp's reason when the link cannot be fetched, is not media, is too
    large, or (when the site says so up front) is longer than max_duration.
    """
    import yt_dlp

    params = {
        "format": "bestaudio/best",
        "outtmpl": {"default": "media.%(ext)s"},
        "paths": {"home": str(workdir), "temp": str(workdir)},
        "noplaylist": True,
        "playlist_items": "1",
        "max_filesize": options.max_download_bytes,
        "socket_timeout": options.url_timeout,
        "retries": 0,
        "fragment_retries": 0,
        "extractor_retries": 0,
        "cachedir": False,  # yt-dlp's cache would outlive the request
        "enable_file_urls": False,  # already the default; stated because it is the point
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _QuietLogger(),
    }
    try:
        with yt_dlp.YoutubeDL(params) as ydl:
            info = ydl.extract_info(url, download=False)
            if info.get("_type") == "playlist":  # noplaylist keeps only the first entry
                info = next(iter(info.get("entries") or []), None) or {}
            duration = info.get("duration")
            if max_duration is not None and duration and duration > max_duration:
                raise InputError(
                    f"{url[:200]}: {format_duration(duration)} of media is over the limit of "
                    f"{format_duration(max_duration)}"
                )
            info = ydl.process_ie_result(info, download=True)
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - yt-dlp and its HTTP stacks raise many kinds
        # e.g. a redirect to file:// ends here ("No connection adapters"): nothing is read
        raise InputError(f"Could not fetch {url[:200]}: {_clean_ytdlp_message(err)}") from err
    files = [p for p in workdir.iterdir() if p.name.startswith("media.") and p.is_file()]
    if not files:  # e.g. max_filesize skipped the download
        raise InputError(
            f"Could not fetch {url[:200]}: nothing was downloaded (larger than "
            f"{options.max_download_bytes // 2**20} MB, or not a media file)"
        )
    return files[0]


class _QuietLogger:
    """yt-dlp logger that keeps the server log clean; errors reach us as DownloadError."""

    def debug(self, msg):
        pass

    def info(self, msg):
        pass

    def warning(self, msg):
        pass

    def error(self, msg):
        pass


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
    out = workdir / "audio.wav"
    cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(src), "-vn", "-ac", "1"]
    cmd += ["-ar", str(SAMPLE_RATE)]
    if max_duration is not None:
        cmd += ["-t", f"{max_duration + 1:.3f}"]
    cmd += [str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not out.is_file():
        # ffmpeg names the file by its server path: say only its name
        reason = (proc.stderr.strip().splitlines() or ["ffmpeg failed"])[-1]
        reason = reason.replace(str(src), name).replace(f"{name}: ", "")
        if "does not contain any stream" in proc.stderr or "matches no streams" in proc.stderr:
            reason = "no audio stream in it: not an audio file, or a video without sound"
        raise AudioError(f"{name}: cannot extract audio ({reason})")
    return out


# --------------------------------------------------------------------------------------------
# Requests


class TranscriptionService:
    """What each UI event calls: input -> audio -> Transcript -> text + files, with cleanup."""

    def __init__(self, transcriber: Transcriber, options: AppOptions):
        self.transcriber = transcriber
        self.options = options
        self.max_duration = transcriber.options.max_duration

    def run(self, kind: str, value, language: str, task: str, timestamps: bool):
        """Transcribe one input; return (transcript text, [txt, srt, vtt paths], summary).

        Raises InputError/AudioError/ValueError with a message for the user; the caller turns
        them into gr.Error. The per-request directory is removed in every case.
        """
        started = time.perf_counter()
        workdir = Path(tempfile.mkdtemp(prefix="whisper-app-"))
        try:
            audio, name = self.load(kind, value, workdir)
            result = self.transcriber.transcribe(
                audio,
                name=name,
                language=None if language in (None, "", DETECT) else language,
                task=task or "transcribe",
                timestamps=bool(timestamps),
            )
            files = write_outputs(result, self.output_dir(), Path(name).stem or "transcript")
            detected = " (detected)" if language in (None, "", DETECT) else ""
            seconds = time.perf_counter() - started
            summary = (
                f"**{name}** · {format_duration(result.duration)} of audio · language "
                f"`{result.language}`{detected} · {result.task} · {_plural(len(result.segments), 'segment')} "
                f"· {seconds:.1f} s ({result.info['backend']})"
            )
            return transcript_text(result, bool(timestamps)), [str(f) for f in files], summary
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def load(self, kind: str, value, workdir: Path):
        """The waveform and a display name for one input of the given kind."""
        if kind == "url":
            url = check_url(value)
            media = download_media(url, workdir, self.options, self.max_duration)
            name = _url_name(url)
            wav = extract_audio(media, workdir, self.max_duration, name)
            return load_audio(wav, name=name), name
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
        if kind == "microphone" and path.is_file() and path.stat().st_size == 0:
            raise AudioError(f"{name}: the recording is empty")
        duration = probe_duration(path)
        if duration is None or kind == "video":
            # not a format libsndfile reads (video, m4a, webm...): ffmpeg, bounded by max_duration
            return load_audio(
                extract_audio(path, workdir, self.max_duration, name), name=name
            ), name
        if self.max_duration is not None and duration > self.max_duration:
            raise AudioError(
                f"{name}: {format_duration(duration)} of audio is over the limit of "
                f"{format_duration(self.max_duration)}"
            )
        return load_audio(path, name=name), name

    def output_dir(self) -> Path:
        """A fresh directory inside Gradio's cache: Gradio serves and later deletes its files."""
        from gradio.utils import get_upload_folder

        return Path(get_upload_folder()) / "transcripts" / uuid.uuid4().hex


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _url_name(url: str) -> str:
    """A file-name-like label for a link: its last path part, else its host."""
    parsed = urllib.parse.urlsplit(url)
    tail = Path(urllib.parse.unquote(parsed.path)).name
    return re.sub(r"[^\w.\-]+", "_", tail or parsed.hostname or "link")[:80]


def transcript_text(result, timestamps: bool) -> str:
    """The transcript as shown in the UI: one line per segment, with times when asked."""
    if not timestamps:
        return result.text
    return "\n".join(
        f"[{format_timestamp(s.start)[3:]} → {format_timestamp(s.end)[3:]}] {s.text}"
        for s in result.segments
    )


# --------------------------------------------------------------------------------------------
# UI


def split_options(options: dict) -> tuple[TranscribeOptions, AppOptions]:
    """Split keyword options between TranscribeOptions and AppOptions; unknown names raise."""
    t_fields = {f.name for f in dataclasses.fields(TranscribeOptions)}
    a_fields = {f.name for f in dataclasses.fields(AppOptions)}
    unknown = set(options) - t_fields - a_fields
    if unknown:
        raise TypeError(f"unknown app option(s): {', '.join(sorted(unknown))}")
    t_opts = TranscribeOptions(**{k: v for k, v in options.items() if k in t_fields})
    a_opts = AppOptions(**{k: v for k, v in options.items() if k in a_fields})
    return t_opts, a_opts


def build_app(model: str | Path | Transcriber, **options):
    """The Gradio Blocks app for a Whisper checkpoint (Hub id, local dir, CT2 export) or a ready
    Transcriber. `options` are TranscribeOptions fields (language, task, timestamps, backend,
    device, max_duration, max_new_tokens, ...) and AppOptions fields (concurrency, ...).
    language/task/timestamps set the UI's initial choices."""
    import gradio as gr

    t_opts, a_opts = split_options(options)
    transcriber = model if isinstance(model, Transcriber) else Transcriber(model, t_opts)
    service = TranscriptionService(transcriber, a_opts)
    t_opts = transcriber.options if isinstance(model, Transcriber) else t_opts

    def handler(kind):
        def fn(value, language, task, timestamps):
            try:
                return service.run(kind, value, language, task, timestamps)
            except (InputError, AudioError, ValueError) as err:
                # gr.Error shows the message in the UI and hands it to API clients; nothing
                # else is sent, and the server goes on serving.
                raise gr.Error(
                    str(err), title="Cannot transcribe this", print_exception=False
                ) from err

        fn.__name__ = f"transcribe_{kind}"
        return fn

    limit = f"max. {format_duration(t_opts.max_duration)}" if t_opts.max_duration else "any length"
    with gr.Blocks(
        title=a_opts.title, analytics_enabled=False, delete_cache=(a_opts.cache_seconds,) * 2
    ) as demo:
        gr.Markdown(
            f"# {a_opts.title}\nModel: `{model_label(transcriber.model_name)}` · backend "
            f"`{transcriber.backend.name}` · audio of {limit}, transcribed in 30-second windows."
        )
        with gr.Row():
            language = gr.Dropdown(
                [("Detect automatically", DETECT)]
                + language_choices(transcriber.backend.languages()),
                value=t_opts.language or DETECT,
                label="Language",
            )
            task = gr.Radio(
                [("Transcribe", "transcribe"), ("Translate to English", "translate")],
                value=t_opts.task,
                label="Task",
            )
            timestamps = gr.Checkbox(value=t_opts.timestamps, label="Timestamps")
        options_in = [language, task, timestamps]
        with gr.Tabs():
            with gr.Tab("Microphone"):
                mic = gr.Audio(sources=["microphone"], type="filepath", label="Record")
                mic_btn = gr.Button("Transcribe recording", variant="primary")
            with gr.Tab("Audio file"):
                audio = gr.Audio(
                    sources=["upload"],
                    type="filepath",
                    editable=True,  # the waveform editor trims before transcribing
                    label="Audio file (trim with the scissors)",
                )
                audio_btn = gr.Button("Transcribe audio", variant="primary")
            with gr.Tab("Video file"):
                video = gr.Video(sources=["upload"], label="Video file")
                video_btn = gr.Button("Transcribe video", variant="primary")
            with gr.Tab("Link"):
                url = gr.Textbox(
                    label="YouTube or direct media link (http/https)",
                    placeholder="https://www.youtube.com/watch?v=... or https://example.org/talk.mp3",
                )
                url_btn = gr.Button("Transcribe link", variant="primary")
        summary = gr.Markdown(label="Summary", elem_id="summary")
        transcript = gr.Textbox(
            label="Transcript", lines=12, buttons=["copy"], elem_id="transcript"
        )
        files = gr.File(label="Download TXT / SRT / VTT", file_count="multiple", elem_id="files")
        outputs = [transcript, files, summary]
        for kind, inp, btn, api in (
            ("microphone", mic, mic_btn, API_MICROPHONE),
            ("audio", audio, audio_btn, API_AUDIO),
            ("video", video, video_btn, API_VIDEO),
            ("url", url, url_btn, API_URL),
        ):
            btn.click(
                handler(kind),
                inputs=[inp, *options_in],
                outputs=outputs,
                api_name=api,
                # one limit shared by all four inputs: the model is one resource
                concurrency_id="transcribe",
                concurrency_limit=a_opts.concurrency,
            )
    demo.queue(max_size=a_opts.max_queue, default_concurrency_limit=a_opts.concurrency)
    demo.transcriber = transcriber  # for callers that want to reuse the loaded model
    return demo


def model_label(model: str) -> str:
    """A Hub id as is; a local folder by its name only (the page shows no server paths)."""
    return Path(model).name if Path(model).exists() else model


def in_colab() -> bool:
    """True inside Google Colab (where `google.colab` is importable)."""
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):
        return False


def launch_app(
    model: str | Path | Transcriber,
    share: bool | None = None,
    server_name: str = "127.0.0.1",
    server_port: int | None = None,
    block: bool = True,
    export_ct2: bool = False,
    **options,
):
    """Build and launch the app; share=None means a public link in Colab only. With
    block=False it returns the running Blocks at once (its URL is `demo.local_url`); call
    `demo.close()` to stop it. export_ct2 converts the model to CTranslate2 first (once; reused
    afterwards), which the default backend "auto" then runs with faster-whisper."""
    if export_ct2 and not isinstance(model, Transcriber):
        print(f"CTranslate2 export: {export_ctranslate2(model)}")
    demo = build_app(model, **options)
    if share is None:
        share = in_colab()
    demo.launch(
        share=share,
        server_name=server_name,
        server_port=server_port,
        prevent_thread_lock=not block,
        show_error=True,
        ssr_mode=False,  # no Node.js server: one process to start and stop
        quiet=False,
    )
    return demo


def check_app(url: str, audio_file: str | Path, language: str = DETECT) -> dict:
    """Answer one real request through gradio_client, as any API user would: transcribe
    `audio_file` via the app at `url`. Returns {"text", "files", "summary"}."""
    from gradio_client import Client, handle_file

    # download_files=False: the answer's files stay on the server (paths), nothing lands here
    client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
    try:
        text, files, summary = client.predict(
            handle_file(str(audio_file)), language, "transcribe", True, api_name=f"/{API_AUDIO}"
        )
    finally:
        client.close()
    paths = [f["path"] if isinstance(f, dict) else f for f in files or []]
    return {"text": text, "files": paths, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m utils.app", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="checkpoint dir, CTranslate2 export or Hub id")
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve the local network")
    p.add_argument(
        "--port", type=int, default=None, help="default: Gradio's (7860 or the next free)"
    )
    p.add_argument("--share", action="store_true", help="public gradio.live link")
    p.add_argument("--language", default=None)
    p.add_argument("--task", default="transcribe", choices=("transcribe", "translate"))
    p.add_argument("--backend", default="auto", choices=("auto", "transformers", "ctranslate2"))
    p.add_argument("--device", default="auto")
    p.add_argument("--max-duration", type=float, default=TranscribeOptions.max_duration)
    p.add_argument("--max-new-tokens", type=int, default=TranscribeOptions.max_new_tokens)
    p.add_argument("--cpu-threads", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=AppOptions.concurrency)
    p.add_argument(
        "--export-ct2", action="store_true", help="convert to CTranslate2 first (faster on CPU)"
    )
    args = p.parse_args(argv)
    launch_app(
        args.model,
        share=args.share or None,
        server_name=args.host,
        server_port=args.port,
        export_ct2=args.export_ct2,
        language=args.language,
        task=args.task,
        backend=args.backend,
        device=args.device,
        max_duration=args.max_duration,
        max_new_tokens=args.max_new_tokens,
        cpu_threads=args.cpu_threads,
        concurrency=args.concurrency,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
