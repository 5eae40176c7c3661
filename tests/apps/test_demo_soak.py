"""A short soak of the web demo (needs the `demo` extra): the app over the packaged default
model, launched on 127.0.0.1 in this process, driven through its HTTP API with gradio_client.

- N requests sent at once are all answered (they queue behind the concurrency limit);
- M sequential requests, each uploading a large photo (downscaled at once), leave the
  server's resident memory flat;
- a decompression-bomb upload gets its reason back, not an error page.

`python benchmarks/soak_demo.py` prints the latency figures of the same run.
"""

import concurrent.futures
import io
import json
import time

import numpy as np
import pytest
from PIL import Image

from illume_plus.pipeline_folder import DEFAULT_MODEL_DIR

pytest.importorskip("gradio")

N_CONCURRENT = 6
# the size control's first choice: the packaged model's own size, from its card
DEFAULT_SIZE_CHOICE = "model default ({}x{})".format(
    *json.loads((DEFAULT_MODEL_DIR / "pipeline.json").read_text())["default_size"])
M_SEQUENTIAL = 12
RSS_GROWTH_LIMIT_MB = 120  # over the last M - 4 requests; the first four warm caches and allocators


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from gradio_client import Client

    from illume_plus.apps.web import launch
    from illume_plus.pipeline_folder import load_pipeline

    pipe = load_pipeline(device="cpu")
    app = launch(pipe, host="127.0.0.1", port=None, block=False, concurrency_limit=1)
    try:
        yield Client(app.local_url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))
    finally:
        app.close()


def _ask(client, text, upload=None, max_new_tokens=4):
    from gradio_client import handle_file

    message = {"text": text, "files": [handle_file(str(upload))] if upload else []}
    history, _ = client.predict(message, [], DEFAULT_SIZE_CHOICE, None, 0, None, None, None, None,
                                max_new_tokens, False, api_name="/respond")
    return history


def _last_text(history) -> str:
    content = history[-1]["content"]
    if isinstance(content, list):  # gradio 6 gives message parts
        content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def test_concurrent_requests_are_all_answered(client):
    questions = [f"question {i}: what is here?" for i in range(N_CONCURRENT)]
    with concurrent.futures.ThreadPoolExecutor(N_CONCURRENT) as pool:
        histories = list(pool.map(lambda q: _ask(client, q), questions))
    assert len(histories) == N_CONCURRENT
    for question, history in zip(questions, histories):
        assert any(m["role"] == "user" and question in str(m["content"]) for m in history)
        assert history[-1]["role"] == "assistant" and _last_text(history).strip()


def test_memory_stays_flat_over_sequential_large_uploads(client, tmp_path):
    big = tmp_path / "big.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (4000, 3000, 3), dtype=np.uint8)).save(big, quality=70)
    readings = []
    for i in range(M_SEQUENTIAL):
        history = _ask(client, "What is in this picture?", upload=big)
        assert "Could not" not in _last_text(history)
        readings.append(_rss_mb())
    growth = max(readings[4:]) - readings[3]
    assert growth < RSS_GROWTH_LIMIT_MB, f"RSS grew {growth:.0f} MB over {M_SEQUENTIAL - 4} requests: {readings}"


def test_a_decompression_bomb_upload_gets_its_reason(client, tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (12_000, 12_000)).save(bomb)  # 144 M pixels in a few KB
    history = _ask(client, "What is this?", upload=bomb)
    text = _last_text(history)
    assert "Could not use the upload" in text and "pixels" in text, text
    assert "bomb.png" in text and "/tmp/" not in text  # named by its file name only
