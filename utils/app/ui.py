"""The Gradio page: microphone, audio and video uploads, links; language, task and timestamps.

Every button is an API endpoint with an explicit name (`/transcribe_audio`, ...) for
gradio_client; all four share one queue and one concurrency limit, since the model is one
resource. The language menu and the task offer only what the checkpoint can do: an English-only
model gets English and "Transcribe", a fine-tuned model starts on its own language.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..audio import format_duration
from ..colab import in_colab
from ..config import from_dict
from ..errors import ConfigError, PipelineError
from ..transcribe import TranscribeOptions, Transcriber, export_ctranslate2
from ..whisper_lang import TRANSLATE, language_name
from .service import DETECT, AppOptions, TranscriptionService

# api_name of each event: client.predict(..., api_name="/<name>")
API_NAMES = {
    "microphone": "transcribe_microphone",
    "audio": "transcribe_audio",
    "video": "transcribe_video",
    "url": "transcribe_url",
}


def split_options(options: dict) -> tuple[TranscribeOptions, AppOptions]:
    """Keyword options split between TranscribeOptions and AppOptions; unknown names raise."""
    t_fields = {f.name for f in dataclasses.fields(TranscribeOptions)}
    a_fields = {f.name for f in dataclasses.fields(AppOptions)}
    unknown = set(options) - t_fields - a_fields
    if unknown:
        raise ConfigError(f"unknown app option(s): {', '.join(sorted(unknown))}")
    t_opts = from_dict(TranscribeOptions, {k: v for k, v in options.items() if k in t_fields})
    a_opts = from_dict(AppOptions, {k: v for k, v in options.items() if k in a_fields})
    return t_opts, a_opts


def language_menu(transcriber: Transcriber) -> tuple[list[tuple[str, str]], str]:
    """(choices, initial value) of the language menu: the checkpoint's languages (plus detection
    for a multilingual one), starting on the options' or the model's language."""
    codes = transcriber.languages()
    choices = sorted((f"{language_name(c)} ({c})", c) for c in codes)
    if transcriber.abilities.multilingual:
        choices = [("Detect automatically", DETECT), *choices]
    initial = transcriber.language or (DETECT if transcriber.abilities.multilingual else codes[0])
    return choices, initial


def model_label(model: str) -> str:
    """A Hub id as is; a local folder by its name only (the page shows no server paths)."""
    return Path(model).name if Path(model).exists() else model


def build_app(model: str | Path | Transcriber, **options):
    """The Gradio Blocks app for a Whisper checkpoint (Hub id, local dir, CT2 export) or a ready
    Transcriber. `options` are TranscribeOptions fields (their language, task and timestamps set
    the UI's initial choices) and AppOptions fields."""
    import gradio as gr

    t_opts, a_opts = split_options(options)
    transcriber = model if isinstance(model, Transcriber) else Transcriber(model, t_opts)
    service = TranscriptionService(transcriber, a_opts)
    t_opts = transcriber.options

    def handler(kind):
        def fn(value, language, task, timestamps, words=False):
            try:
                return service.run(kind, value, language, task, timestamps, words)
            except PipelineError as err:
                # gr.Error shows the message in the UI and hands it to API clients; nothing else
                # is sent, and the server goes on serving.
                raise gr.Error(
                    str(err), title="Cannot transcribe this", print_exception=False
                ) from err

        fn.__name__ = f"transcribe_{kind}"
        return fn

    limit = f"max. {format_duration(t_opts.max_duration)}" if t_opts.max_duration else "any length"
    choices, initial = language_menu(transcriber)
    tasks = [("Transcribe", "transcribe")]
    if TRANSLATE in transcriber.tasks():
        tasks.append(("Translate to English", TRANSLATE))
    with gr.Blocks(
        title=a_opts.title, analytics_enabled=False, delete_cache=(a_opts.cache_seconds,) * 2
    ) as demo:
        gr.Markdown(
            f"# {a_opts.title}\nModel: `{model_label(transcriber.model_name)}` · backend "
            f"`{transcriber.backend.name}` · audio of {limit}, long recordings in 30-second windows."
        )
        with gr.Row():
            language = gr.Dropdown(choices, value=initial, label="Language")
            task = gr.Radio(
                tasks,
                value=t_opts.task if t_opts.task in dict(tasks).values() else "transcribe",
                label="Task",
            )
            timestamps = gr.Checkbox(value=t_opts.timestamps, label="Timestamps")
            words = gr.Checkbox(value=t_opts.word_timestamps, label="Word-by-word subtitles")
        options_in = [language, task, timestamps, words]
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
        for kind, inp, btn in (
            ("microphone", mic, mic_btn),
            ("audio", audio, audio_btn),
            ("video", video, video_btn),
            ("url", url, url_btn),
        ):
            btn.click(
                handler(kind),
                inputs=[inp, *options_in],
                outputs=[transcript, files, summary],
                api_name=API_NAMES[kind],
                # one limit shared by all four inputs: the model is one resource
                concurrency_id="transcribe",
                concurrency_limit=a_opts.concurrency,
            )
    demo.queue(max_size=a_opts.max_queue, default_concurrency_limit=a_opts.concurrency)
    demo.transcriber = transcriber  # for callers that want to reuse the loaded model
    demo.app_options = a_opts
    demo.initial_language = initial
    return demo


def launch_app(
    model: str | Path | Transcriber,
    share: bool | None = None,
    server_name: str = "127.0.0.1",
    server_port: int | None = None,
    block: bool = True,
    export_ct2: bool = False,
    **options,
):
    """Build and launch the app; share=None means a public link in Colab only. With block=False
    it returns the running Blocks at once (its URL is `demo.local_url`; `demo.close()` stops it).
    export_ct2 converts the model to CTranslate2 first (once), which the "auto" backend then runs."""
    if export_ct2 and not isinstance(model, Transcriber):
        export_ctranslate2(model)
    demo = build_app(model, **options)
    demo.launch(
        share=in_colab() if share is None else share,
        server_name=server_name,
        server_port=server_port,
        prevent_thread_lock=not block,
        show_error=True,
        max_file_size=demo.app_options.max_file_size,
        ssr_mode=False,  # no Node.js server: one process to start and stop
        quiet=False,
    )
    return demo


def check_app(url: str, audio_file: str | Path, language: str = DETECT) -> dict:
    """Answer one real request through gradio_client, as any API user would: transcribe
    `audio_file` via the app at `url` with the language menu's value. Returns {"text", "files",
    "summary"}."""
    from gradio_client import Client, handle_file

    # download_files=False: the answer's files stay on the server (paths), nothing lands here
    client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
    try:
        text, files, summary = client.predict(
            handle_file(str(audio_file)),
            language,
            "transcribe",
            True,
            False,
            api_name=f"/{API_NAMES['audio']}",
        )
    finally:
        client.close()
    paths = [f["path"] if isinstance(f, dict) else f for f in files or []]
    return {"text": text, "files": paths, "summary": summary}
