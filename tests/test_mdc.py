"""Common Voice from Mozilla Data Collective through its official client (`datacollective`).

MDC cannot be reached from here, so a loopback HTTP server speaks the part of its API the client
uses (dataset details, a signed download URL, the sample URL, byte ranges), and MDC_API_URL points
the client at it: the client's real code downloads, resumes and fails against it.
"""

from __future__ import annotations

import csv
import hashlib
import http.server
import json
import tarfile
import threading

import pytest

from utils.errors import SourceError
from utils.sources import open_source

GOOD_KEY = "mdc-test-key"
DATASET = "cmk-common-voice-en-test"


class MDCHandler(http.server.BaseHTTPRequestHandler):
    """/api/datasets/<id>[/download|/sample-download] and /files/<name> with Range support."""

    def log_message(self, *args):
        pass

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server's naming
        state = self.server.state
        if self.path == f"/api/datasets/{DATASET}":
            return self._json(200, {"id": DATASET, **state["details"]})
        if self.path.startswith("/api/datasets/"):
            return self._json(404, {"message": "Dataset not found"})
        if self.path.startswith("/files/"):
            data = state["files"][self.path.removeprefix("/files/")]
            start = 0
            if rng := self.headers.get("Range"):
                state["ranges"].append(rng)
                start = int(rng.removeprefix("bytes=").split("-")[0])
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if state["cut_after"]:  # the connection drops part way
                self.wfile.write(data[start : start + state.pop("cut_after")])
                state["cut_after"] = 0
                self.wfile.flush()
                self.connection.close()
                return
            self.wfile.write(data[start:])
            return
        self._json(404, {"message": "no such path"})

    def do_POST(self):  # noqa: N802
        state = self.server.state
        if self.headers.get("Authorization") != f"Bearer {GOOD_KEY}":
            return self._json(401, {"message": "Invalid API key"})
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.path == f"/api/datasets/{DATASET}/download":
            d = state["details"]
            url = f"{base}/files/{d['filename']}"
            return self._json(
                200, {"downloadUrl": url, "sizeBytes": d["sizeBytes"], "checksum": d["checksum"]}
            )
        if self.path == f"/api/datasets/{DATASET}/sample-download":
            data = state["files"]["sample.tar.gz"]
            url = f"{base}/files/sample.tar.gz"
            return self._json(
                200, {"downloadUrl": url, "sizeBytes": len(data), "filename": "sample.tar.gz"}
            )
        self._json(404, {"message": "Dataset not found"})


def release_archive(corpus, out):
    """A Common Voice release archive of the English sample (cv-corpus-test/en/...)."""
    with tarfile.open(out, "w:gz") as tar:
        for path in sorted((corpus / "en").rglob("*")):
            tar.add(
                path,
                arcname=f"cv-corpus-test/en/{path.relative_to(corpus / 'en')}",
                recursive=False,
            )
    return out.read_bytes()


@pytest.fixture
def mdc(tmp_path, sample_corpus, monkeypatch):
    """The loopback MDC server; yields its state (files, details, ranges seen, cut_after)."""
    archive = release_archive(sample_corpus, tmp_path / "cv.tar.gz")
    state = {
        "files": {"cv-corpus-test-en.tar.gz": archive, "sample.tar.gz": archive},
        "details": {
            "filename": "cv-corpus-test-en.tar.gz",
            "sizeBytes": len(archive),
            "checksum": hashlib.sha256(archive).hexdigest(),
        },
        "ranges": [],
        "cut_after": 0,
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MDCHandler)
    server.state = state
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MDC_API_URL", f"http://127.0.0.1:{server.server_address[1]}/api")
    monkeypatch.setenv("MDC_API_KEY", GOOD_KEY)
    monkeypatch.setenv("MDC_DOWNLOAD_PATH", str(tmp_path / "downloads"))
    yield state
    server.shutdown()
    server.server_close()


def sentences(corpus, split: str) -> list[str]:
    with open(corpus / "en" / f"{split}.tsv", encoding="utf-8", newline="") as f:
        return [r["sentence"] for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def test_download_is_cut_then_resumed_and_read_as_common_voice(mdc, tmp_path, sample_corpus):
    cut = mdc["cut_after"] = len(mdc["files"]["cv-corpus-test-en.tar.gz"]) // 3
    with pytest.raises(
        SourceError, match=f"mdc:{DATASET}: the download stopped .* run again to resume"
    ):
        open_source(f"mdc:{DATASET}", locale="en")
    part = tmp_path / "downloads" / "cv-corpus-test-en.tar.gz.part"
    kept = part.stat().st_size
    assert 0 < kept <= cut  # what arrived is kept (the client writes whole 64 KB chunks)
    source = open_source(f"mdc:{DATASET}", locale="en")
    assert mdc["ranges"] == [f"bytes={kept}-"]  # the second run asked only for the rest
    assert not part.exists()
    archive = tmp_path / "downloads" / "cv-corpus-test-en.tar.gz"
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == mdc["details"]["checksum"]
    assert [e.text for e in source.examples("test")] == sentences(sample_corpus, "test")
    # a third run finds the verified archive and its extraction: no request for the file at all
    mdc["files"].clear()
    assert [
        e.text for e in open_source(f"mdc:{DATASET}", locale="en").examples("dev")
    ] == sentences(sample_corpus, "dev")


def test_sample(mdc, sample_corpus):
    source = open_source(f"mdc:{DATASET}?sample=true", locale="en")
    assert len(list(source.examples("train"))) == len(sentences(sample_corpus, "train"))


@pytest.mark.parametrize(
    "key,spec,message",
    [
        ("wrong-key", f"mdc:{DATASET}", "the API key was refused .* MDC_API_KEY"),
        (None, f"mdc:{DATASET}", "no Mozilla Data Collective API key: create a key"),
        (GOOD_KEY, "mdc:no-such-dataset", "mdc:no-such-dataset: no such dataset"),
        (GOOD_KEY, "mdc:../../etc", "not a dataset id"),
    ],
)
def test_clear_errors(mdc, monkeypatch, key, spec, message):
    if key is None:
        monkeypatch.delenv("MDC_API_KEY")
    else:
        monkeypatch.setenv("MDC_API_KEY", key)
    with pytest.raises(SourceError, match=message):
        open_source(spec, locale="en")


def test_damaged_archive_is_removed(mdc, tmp_path):
    mdc["details"]["checksum"] = hashlib.sha256(b"another archive").hexdigest()
    with pytest.raises(SourceError, match="archive is damaged .*sha256.* removed, run again"):
        open_source(f"mdc:{DATASET}", locale="en")
    assert not (tmp_path / "downloads" / "cv-corpus-test-en.tar.gz").exists()
