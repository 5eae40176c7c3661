"""The web demo in a real browser: headless Chromium (Debian's, via the playwright package; no
browser is downloaded) drives `illume-plus demo` on localhost through one conversation:
upload an image and get an answer, ask for an image and see it rendered, edit it, send a file
that is not an image and read the reason in the page. Skips, saying why, where chromium,
playwright or gradio is missing (.ci/run installs them).

ILLUME_PLUS_SCREENSHOTS=DIR keeps the screenshots (the README's picture comes from here).
"""

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STEP_TIMEOUT_MS = 240_000  # one model call on a loaded 2-core CI machine


def _chromium() -> str | None:
    for candidate in (os.environ.get("ILLUME_PLUS_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _skip_reason() -> str | None:
    import importlib.util

    for module in ("gradio", "playwright"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -c constraints.txt -e '.[demo,browser-test]')"
    if _chromium() is None:
        return "no chromium executable (apt-get install -y chromium)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    """`illume-plus demo` (the packaged default model) in a subprocess, as a user starts it."""
    port = _free_port()
    log = tmp_path_factory.mktemp("demo") / "server.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "illume_plus", "demo", "--port", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 240
        while True:
            if server.poll() is not None:
                pytest.fail(f"the demo exited with {server.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the demo did not answer within 240 s: {log.read_text()[-2000:]}")
            time.sleep(1)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def page(demo_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 2000})
        page.set_default_timeout(STEP_TIMEOUT_MS)
        page.goto(demo_url, wait_until="load")
        page.wait_for_selector("#message textarea")
        yield page
        browser.close()


def _send(page, text: str, upload: Path | None = None) -> None:
    if upload is not None:
        page.set_input_files("#message input[type=file]", str(upload))
        page.wait_for_selector("#message img, #message [data-testid=file-preview], #message .thumbnail-item")
    page.fill("#message textarea", text)
    page.click("#message [data-testid=submit-button]")


def _bot_messages(page):
    return page.locator("#conversation [data-testid=bot]")


def _wait_for_bot_messages(page, count: int) -> None:
    page.wait_for_function(f"document.querySelectorAll('#conversation [data-testid=bot]').length >= {count}")


def _pixels(page, image_locator) -> np.ndarray:
    image_locator.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image_locator.element_handle())
    png = image_locator.screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)


def _shots_dir(tmp_path_factory) -> Path:
    wanted = os.environ.get("ILLUME_PLUS_SCREENSHOTS")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_one_conversation_understands_generates_and_edits(page, tmp_path, tmp_path_factory):
    from illume_plus.world import example

    shots = _shots_dir(tmp_path_factory)
    photo = tmp_path / "shapes.png"
    example("test", 2).image().save(photo)  # a shape-world scene: what the default model knows

    _send(page, "Describe the picture.", upload=photo)
    _wait_for_bot_messages(page, 1)
    answer = _bot_messages(page).nth(0).inner_text().strip()
    assert answer and "Could not" not in answer and "Cannot" not in answer, answer

    _send(page, "draw an image of a large red circle in the center")
    page.wait_for_selector("#conversation [data-testid=bot] img")
    generated = _pixels(page, page.locator("#conversation [data-testid=bot] img").last)
    assert generated.shape[0] > 32 and generated.shape[1] > 32
    assert generated.std() > 2.0, "the generated image is blank"

    _send(page, "make the red circle blue")
    page.wait_for_function("document.querySelectorAll('#conversation [data-testid=bot] img').length >= 2")
    edited = _pixels(page, page.locator("#conversation [data-testid=bot] img").last)
    assert edited.std() > 2.0, "the edited image is blank"
    page.screenshot(path=str(shots / "demo_conversation.png"), full_page=True)


def test_a_file_that_is_not_an_image_gets_a_reason_in_the_page(page, tmp_path, tmp_path_factory):
    fake = tmp_path / "notes.png"
    fake.write_bytes(b"these are notes, not pixels\n" * 20)
    before = _bot_messages(page).count()
    _send(page, "What is this?", upload=fake)
    _wait_for_bot_messages(page, before + 1)
    text = _bot_messages(page).last.inner_text()
    assert "Could not use the upload" in text and "cannot read image" in text, text
    assert "Traceback" not in page.content()
    page.screenshot(path=str(_shots_dir(tmp_path_factory) / "demo_bad_upload.png"), full_page=True)
