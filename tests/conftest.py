"""Shared fixtures: the repository root, the bundled sample corpus, and built artifacts."""

import os
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# No test may reach the Hugging Face Hub: fail at once instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Stores made by tests record themselves as "the latest" here, not in the repository's runs/.
os.environ.setdefault("WHISPER_FEATURES_ROOT", tempfile.mkdtemp(prefix="whisper-features-"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def sample_corpus() -> Path:
    return REPO_ROOT / "data" / "cv-corpus-sample"


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> Path:
    """A tiny random-weight Whisper (80 mel bins, real multilingual ids), built once per session."""
    from utils.models.tiny_random import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper") / "model")


@pytest.fixture(scope="session")
def tiny_en() -> Path:
    """OpenAI's Whisper tiny.en with its real weights (converted once into .cache/, or the
    Hugging Face cache's copy): for tests of behaviour that depends on the weights."""
    from utils.models.tiny_en import tiny_en_checkpoint

    return tiny_en_checkpoint()


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory, tiny_whisper, sample_corpus) -> Path:
    """A feature store of the sv-SE sample (24 train, 6 dev, 6 test clips) made with the tiny
    Whisper, in shards of 8 examples (train has 3). Shared by the session: copy it before changing it.
    """
    from utils.featurize import FeatureConfig, run_feature_pipeline

    store = tmp_path_factory.mktemp("sample-store") / "sv-SE-tiny"
    cfg = FeatureConfig(
        source=str(sample_corpus / "sv-SE"),
        store=str(store),
        model=str(tiny_whisper),
        language="swedish",
        shard_size=8,
        workers=0,  # in this process: 36 clips take well under a second, a pool takes seconds
    )
    run_feature_pipeline(cfg)
    return store


@pytest.fixture(scope="session")
def inference_app(tmp_path_factory, tiny_en):
    """The inference app (`python -m utils.app`) serving the real tiny.en from a subprocess on
    127.0.0.1, shared by the app tests. Its TMPDIR and Gradio cache are private folders, so tests
    can check that requests leave no temporary files behind. Yields a namespace with url, tmpdir,
    cache, log (path of the server's output) and proc."""
    import socket
    import subprocess
    import sys
    import time
    import types
    import urllib.request

    root = tmp_path_factory.mktemp("inference-app")
    tmpdir, cache = root / "tmp", root / "gradio-cache"
    tmpdir.mkdir()
    with socket.socket() as s:  # a free port; the tiny window before the server binds is harmless
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(
        os.environ,
        TMPDIR=str(tmpdir),
        GRADIO_TEMP_DIR=str(cache),
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(REPO_ROOT),
        # torch makes its compile cache under TMPDIR when transformers imports torch._dynamo:
        # torch's own, not a leftover of a request, so it lives elsewhere
        TORCHINDUCTOR_CACHE_DIR=str(root / "torch-cache"),
    )
    # max_duration 20 s lets a test send an over-long file cheaply.
    cmd = [sys.executable, "-m", "utils.app", "--model", str(tiny_en), "--port", str(port)]
    cmd += ["--cpu-threads", "1", "--max-duration", "20"]
    # the media server of the tests is on 127.0.0.1: allowed here, refused by default
    cmd += ["--allow-private-links"]
    log = root / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the app did not answer in 180 s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    yield types.SimpleNamespace(url=url, tmpdir=tmpdir, cache=cache, log=log, proc=proc)
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
