"""The Gradio app, really launched (`python -m utils.app`, the real tiny.en) and called through
gradio_client like any API user: audio, video, microphone and URL inputs, every kind of bad input,
the files it hands out, its queue settings, cleanup, and notebook 03 under papermill.

Each good input is an English sentence of the sample corpus: the answer must be its text (WER
bound), with TXT/SRT/VTT files that parse; for bad input, the message the user sees.
"""

from __future__ import annotations

import csv
import functools
import http.server
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import jiwer
import nbformat
import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from transformers.models.whisper.english_normalizer import BasicTextNormalizer

from utils.app import build_app, check_url
from utils.audio import SAMPLE_RATE, ffmpeg_exe, load_audio

from .test_transcription import FAST, assert_increasing, parse_srt, parse_vtt

REPO = Path(__file__).resolve().parent.parent
# language, task, timestamps as the UI sends them; the menu of an English-only model offers "en" only
OPTIONS = ("en", "transcribe", True)


@pytest.fixture(scope="module")
def client(inference_app, tmp_path_factory):
    downloads = tmp_path_factory.mktemp("client-downloads")
    c = Client(
        inference_app.url, verbose=False, download_files=str(downloads), analytics_enabled=False
    )
    yield c
    c.close()


@pytest.fixture(scope="module")
def clip(sample_corpus) -> Path:
    """An English test clip, held out of training (its sentence is in SENTENCES)."""
    return sample_corpus / "en" / "clips" / sentence_row(sample_corpus)["path"]


# A held-out test sentence that zero-shot tiny.en transcribes word for word on the sample corpus
# ("The river was frozen for most of January."): a wrong answer here is the app's fault.
CLIP = "common_voice_en_44188638.mp3"


def sentence_row(corpus: Path) -> dict:
    with open(corpus / "en" / "test.tsv", newline="") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return next(row for row in rows if row["path"] == CLIP)


def close_to_sentence(text: str, corpus: Path, bound: float = 0.2) -> bool:
    """Whether `text` (timestamps stripped) is the clip's sentence up to a normalized WER bound."""
    norm = BasicTextNormalizer()
    said = norm(re.sub(r"\[[^\]]*\]", " ", text))
    return jiwer.wer(norm(sentence_row(corpus)["sentence"]), said) <= bound


@pytest.fixture(scope="module")
def media(tmp_path_factory, clip, sample_corpus) -> dict[str, Path]:
    """Every test input, made once: good media and each kind of bad input."""
    d = tmp_path_factory.mktemp("media")
    ff = [ffmpeg_exe(), "-nostdin", "-v", "error", "-y"]
    audio = load_audio(clip)
    files = {"clip": clip}
    # a video: a blue picture with the clip as its sound track, and the same without sound
    files["video"] = d / "talk.mp4"
    subprocess.run(
        [*ff, "-f", "lavfi", "-i", "color=c=blue:s=160x120:r=10", "-i", str(clip), "-shortest"]
        + ["-c:v", "mpeg4", "-c:a", "aac", str(files["video"])],
        check=True,
    )
    files["mute_video"] = d / "mute.mp4"
    subprocess.run(
        [*ff, "-f", "lavfi", "-i", "color=c=red:s=160x120:r=10:d=2", "-c:v", "mpeg4"]
        + [str(files["mute_video"])],
        check=True,
    )
    files["recording"] = d / "recording.wav"  # what the microphone sends: a wav
    sf.write(files["recording"], audio, SAMPLE_RATE)
    files["empty_recording"] = d / "empty.wav"  # a recording stopped at once: 0 bytes
    files["empty_recording"].write_bytes(b"")
    files["zero_length"] = d / "zero.wav"  # a valid wav header and no samples
    sf.write(files["zero_length"], np.zeros(0, np.float32), SAMPLE_RATE)
    files["silence"] = d / "silence.wav"
    sf.write(files["silence"], np.zeros(3 * SAMPLE_RATE, np.float32), SAMPLE_RATE)
    files["not_audio"] = d / "notes.txt"
    files["not_audio"].write_text("Shopping list: milk, bread.\n" * 40)
    files["corrupted"] = d / "damaged.mp3"  # noise where the mp3 frames should be
    files["corrupted"].write_bytes(np.random.default_rng(0).bytes(20_000))
    files["too_long"] = d / "lecture.wav"  # 25 s; the test app accepts 20 s at most
    clips = [load_audio(p) for p in sorted((sample_corpus / "it" / "clips").glob("*.mp3"))[:12]]
    sf.write(files["too_long"], np.concatenate(clips)[: 25 * SAMPLE_RATE], SAMPLE_RATE)
    return files


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/redirect-to-file":  # a server trying to make us read our own disk
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def media_server(tmp_path_factory, clip):
    """An HTTP server on 127.0.0.1 (ephemeral port) serving a clip, a page and a redirect."""
    root = tmp_path_factory.mktemp("www")
    shutil.copy(clip, root / "interview.mp3")
    (root / "page.html").write_text("<html><body>No media here.</body></html>")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def check_answer(answer, duration: float):
    """A successful answer: transcript text, TXT/SRT/VTT files that parse, and a summary."""
    text, files, summary = answer
    assert isinstance(text, str) and text.strip()
    assert isinstance(summary, str) and "language" in summary
    by_ext = {Path(f).suffix: Path(f) for f in files}
    assert set(by_ext) == {".txt", ".srt", ".vtt"}
    assert by_ext[".txt"].read_text().strip()
    assert_increasing(parse_srt(by_ext[".srt"].read_text()), duration)
    assert_increasing(parse_vtt(by_ext[".vtt"].read_text()), duration)
    return text


def duration_of(path: Path) -> float:
    return len(load_audio(path)) / SAMPLE_RATE


def test_audio_file(client, media, sample_corpus):
    text = check_answer(
        client.predict(handle_file(media["clip"]), *OPTIONS, api_name="/transcribe_audio"),
        duration_of(media["clip"]),
    )
    assert close_to_sentence(text, sample_corpus), text
    # explicit language, no timestamps: one line of plain text
    text, _, summary = client.predict(
        handle_file(media["clip"]), "en", "transcribe", False, api_name="/transcribe_audio"
    )
    assert "`en`" in summary and "[" not in text and close_to_sentence(text, sample_corpus)
    # an English-only checkpoint's menus offer neither another language nor translation
    for language, task in (("sv", "transcribe"), ("en", "translate")):
        with pytest.raises(AppError, match="not in the list of choices"):
            client.predict(
                handle_file(media["clip"]), language, task, False, api_name="/transcribe_audio"
            )


def test_microphone(client, media, sample_corpus):
    text = check_answer(
        client.predict(
            handle_file(media["recording"]), *OPTIONS, api_name="/transcribe_microphone"
        ),
        duration_of(media["recording"]),
    )
    assert close_to_sentence(text, sample_corpus), text


def test_video_file(client, media, sample_corpus):
    text = check_answer(
        client.predict(handle_file(media["video"]), *OPTIONS, api_name="/transcribe_video"),
        duration_of(media["clip"]) + 0.1,  # the container may pad the audio track a little
    )
    assert close_to_sentence(text, sample_corpus), text


def test_url(client, media_server, media, sample_corpus):
    answer = client.predict(f"{media_server}/interview.mp3", *OPTIONS, api_name="/transcribe_url")
    text = check_answer(answer, duration_of(media["clip"]) + 0.1)
    assert "interview.mp3" in answer[2] and close_to_sentence(text, sample_corpus), text


@pytest.mark.parametrize(
    "api,key,message",
    [
        (
            "/transcribe_audio",
            "not_audio",
            r"notes.txt: cannot extract audio \(no audio stream in it",
        ),
        ("/transcribe_audio", "corrupted", r"damaged.mp3: cannot (extract|decode) audio"),
        ("/transcribe_audio", "zero_length", r"zero.wav: the file holds no audio samples"),
        ("/transcribe_audio", "silence", r"silence.wav: the audio holds only silence"),
        (
            "/transcribe_audio",
            "too_long",
            r"lecture.wav: 25.0 s of audio is over the limit of 20.0 s",
        ),
        ("/transcribe_microphone", "empty_recording", r"empty.wav: the recording is empty"),
        ("/transcribe_microphone", None, r"Record something first"),
        ("/transcribe_audio", None, r"Upload an audio file first"),
        (
            "/transcribe_video",
            "mute_video",
            r"mute.mp4: cannot extract audio \(no audio stream in it: not an audio file, or a video",
        ),
    ],
)
def test_bad_files(client, media, api, key, message):
    value = None if key is None else handle_file(media[key])
    with pytest.raises(AppError, match=message) as err:
        client.predict(value, *OPTIONS, api_name=api)
    assert "/tmp" not in str(err.value)  # messages name the file, never the server's folders


@pytest.mark.parametrize(
    "url,message",
    [
        ("", "Paste a link first"),
        ("file:///etc/passwd", "Only http:// and https:// links are accepted, not 'file://' links"),
        ("FILE:///etc/passwd", "not 'file://' links"),
        ("/etc/passwd", "not local paths"),
        ("../../etc/passwd", "not local paths"),
        ("ftp://127.0.0.1/x.mp3", "not 'ftp://' links"),
        ("javascript:alert(1)", "not 'javascript://' links"),
        ("data:audio/wav;base64,UklGRg==", "not 'data://' links"),
        ("http:///etc/passwd", "The link has no host name"),
    ],
)
def test_refused_urls(client, url, message):
    with pytest.raises(AppError, match=message):
        client.predict(url, *OPTIONS, api_name="/transcribe_url")


def test_unreachable_and_bad_links(client, media_server):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    # one message whatever went wrong: the box must not tell open ports from closed ones
    messages = set()
    for url in (
        f"http://127.0.0.1:{closed}/talk.mp3",
        f"{media_server}/missing.mp3",
        f"{media_server}/page.html",
    ):
        with pytest.raises(AppError, match=r"Could not fetch .*cannot be reached from here") as err:
            client.predict(url, *OPTIONS, api_name="/transcribe_url")
        messages.add(str(err.value).replace(url[:200], "URL"))
    assert len(messages) == 1, messages
    # a redirect to file:// is not followed: nothing on the server's disk is read
    with pytest.raises(AppError, match=r"Could not fetch") as err:
        client.predict(f"{media_server}/redirect-to-file", *OPTIONS, api_name="/transcribe_url")
    assert "root:" not in str(err.value)


def test_check_url_unit():
    assert check_url("  https://example.org/a.mp3 ") == "https://example.org/a.mp3"
    for bad in ("file:/etc/passwd", "C:\\talk.mp3", "~/talk.mp3", "gopher://x/y"):
        with pytest.raises(ValueError, match="Only http"):
            check_url(bad)


def test_events_have_api_names_and_a_queue(inference_app, tiny_whisper):
    with urllib.request.urlopen(inference_app.url + "config", timeout=10) as resp:
        config = json.load(resp)
    deps = [d for d in config["dependencies"] if d.get("backend_fn")]
    assert {d["api_name"] for d in deps} == {
        "transcribe_microphone",
        "transcribe_audio",
        "transcribe_video",
        "transcribe_url",
    }
    assert all(d["queue"] and d["api_visibility"] == "public" for d in deps)
    # the concurrency settings are not in the served config: look at a built app
    demo = build_app(tiny_whisper, concurrency=2, max_queue=5, **FAST)
    assert demo.app_options.max_file_size == 200 * 1024 * 1024  # uploads are capped
    fns = list(demo.fns.values())
    assert len(fns) == 4
    # one concurrency group shared by every input: the model is one resource
    assert {(f.concurrency_id, f.concurrency_limit) for f in fns} == {("transcribe", 2)}
    assert demo._queue.max_size == 5


def test_still_serving_and_no_temporary_files_left(client, media, inference_app):
    """After all the requests above (good and bad), the server answers and its temp dir is empty:
    every request's working folder is gone (the transcripts live in Gradio's cache)."""
    check_answer(
        client.predict(handle_file(media["clip"]), *OPTIONS, api_name="/transcribe_audio"),
        duration_of(media["clip"]),
    )
    assert inference_app.proc.poll() is None
    leftovers = sorted(p.name for p in inference_app.tmpdir.iterdir())
    assert leftovers == [], leftovers
    transcripts = inference_app.cache / "transcripts"
    assert transcripts.is_dir() and all(d.parent == transcripts for d in transcripts.iterdir())


def test_notebook_03_check_mode(tiny_whisper, tmp_path):
    """papermill runs notebook 03 in check mode: on this CPU it exports the model to CTranslate2,
    launches the app on it, answers one request through gradio_client, and stops."""
    model = tmp_path / "model"  # a copy: the export is written into the model's folder
    shutil.copytree(tiny_whisper, model)
    out = tmp_path / "03_inference_app.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(REPO / "03_inference_app.ipynb"), str(out)]
    cmd += ["-p", "model", str(model), "-p", "launch_mode", "check"]
    cmd += ["-p", "check_output", str(tmp_path / "answer.json")]
    cmd += ["-p", "max_new_tokens", "8", "-p", "server_port", str(_free_port()), "--cwd", str(REPO)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    printed = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "common_voice_" in printed and "language" in printed
    assert ".srt" in printed and ".vtt" in printed and "Closing server" in printed
    assert (model / "ctranslate2" / "model.bin").is_file() and "(ctranslate2)" in printed
    answer = json.loads((tmp_path / "answer.json").read_text())
    assert isinstance(answer["text"], str) and answer["text"] and len(answer["files"]) == 3
    # the committed notebook carries no outputs
    committed = nbformat.read(REPO / "03_inference_app.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in committed.cells if c.cell_type == "code")
    assert any("parameters" in c.metadata.get("tags", []) for c in committed.cells)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
