"""Load figures for the web demo: N requests sent at once, each timed from send to answer.

    python benchmarks/soak_demo.py --concurrent 8 --task answer     # or --task generate

Launches `illume-plus demo`'s app (packaged default model, CPU, concurrency limit 1) on
127.0.0.1 in this process and prints one JSON line: answered, errors, latency min / median / max.
"""

import argparse
import concurrent.futures
import json
import statistics
import tempfile
import time

from gradio_client import Client

from illume_plus.apps.web import launch
from illume_plus.pipeline_folder import DEFAULT_MODEL_DIR, load_pipeline

# the size control's first choice: the packaged model's own size, from its card
DEFAULT_SIZE_CHOICE = "model default ({}x{})".format(
    *json.loads((DEFAULT_MODEL_DIR / "pipeline.json").read_text())["default_size"])

p = argparse.ArgumentParser()
p.add_argument("--concurrent", type=int, default=8)
p.add_argument("--task", choices=("answer", "generate"), default="answer")
p.add_argument("--concurrency-limit", type=int, default=1)
args = p.parse_args()

app = launch(load_pipeline(device="cpu"), port=None, block=False, concurrency_limit=args.concurrency_limit)
client = Client(app.local_url, verbose=False, download_files=tempfile.mkdtemp())


def one(i: int):
    text = f"draw an image of shape {i}" if args.task == "generate" else f"question {i}: what is here?"
    start = time.perf_counter()
    history, _ = client.predict({"text": text, "files": []}, [], DEFAULT_SIZE_CHOICE, None, i, None, None,
                                None, None, 8, False, api_name="/respond")
    ok = history[-1]["role"] == "assistant" and "error" not in str(history[-1]["content"]).lower()
    return ok, time.perf_counter() - start


t0 = time.perf_counter()
with concurrent.futures.ThreadPoolExecutor(args.concurrent) as pool:
    results = list(pool.map(one, range(args.concurrent)))
latencies = sorted(t for _, t in results)
print(json.dumps({"task": args.task, "concurrent": args.concurrent, "answered": sum(ok for ok, _ in results),
                  "errors": sum(not ok for ok, _ in results), "wall_s": round(time.perf_counter() - t0, 1),
                  "latency_s": {"min": round(latencies[0], 2), "median": round(statistics.median(latencies), 2),
                                "max": round(latencies[-1], 2)},
                  "concurrency_limit": args.concurrency_limit}))
app.close()
