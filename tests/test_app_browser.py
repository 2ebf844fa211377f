"""The app in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright
opens the page, uploads an audio file, presses the button and reads the transcript. A screenshot
is saved to artifacts/app.png (git-ignored) as the test's artifact.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from .test_app import close_to_sentence, sentence_row

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying to reach Google's servers,
# which a closed network refuses; no sandbox because tests may run as root.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file(), reason=f"no Chromium at {CHROMIUM} (apt install chromium)"
)


def test_upload_transcribe_in_browser(inference_app, sample_corpus):
    clip = sample_corpus / "en" / "clips" / sentence_row(sample_corpus)["path"]
    artifacts = REPO / "artifacts"
    artifacts.mkdir(exist_ok=True)
    with playwright_api.sync_playwright() as p:
        # Playwright's own browser download is not used: Debian's Chromium is driven directly.
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1100})
            page.goto(inference_app.url, wait_until="networkidle")
            page.get_by_role("tab", name="Audio file").click()
            page.locator("input[type=file]").first.set_input_files(str(clip))
            # the upload is done when its waveform editor shows up (with the trim button)
            page.get_by_label("Trim audio to selection").wait_for(timeout=30_000)
            page.get_by_role("button", name="Transcribe audio").click()
            transcript = page.locator("#transcript textarea")
            page.wait_for_function(
                "el => el.value.trim().length > 0", arg=transcript.element_handle(), timeout=120_000
            )
            text = transcript.input_value()
            page.locator("#files").get_by_text(".srt").first.wait_for(timeout=30_000)
            summary = page.locator("#summary").inner_text()
            page.screenshot(path=str(artifacts / "app.png"), full_page=True)
        finally:
            browser.close()
    assert re.match(r"\[\d\d:\d\d\.\d{3} → \d\d:\d\d\.\d{3}\] ", text), text  # timestamped lines
    assert close_to_sentence(text, sample_corpus), text  # the real tiny.en: the sentence said
    assert clip.name in summary and "language" in summary
