"""Seconds per request of the shipped shape-world model on this CPU: answer, generate, edit.

    python benchmarks/bench_world_speed.py [--model DIR] [--threads 2] [--repeats 3]

Each request is timed end to end as a user sees it (pixels in, pixels or text out), after one
warm-up, over a few held-out test scenes; the median is reported. The issue's target: each <= 2 s
on 2 CPU cores. Prints a table, then LAST one JSON line with the medians.
"""

import argparse
import json
import statistics
import time

import torch

from illume_plus.pipeline import Pipeline
from illume_plus.world import examples

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--model", default=None, help="pipeline folder (default: the shipped model)")
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--repeats", type=int, default=3)
args = parser.parse_args()
torch.set_num_threads(args.threads)

pipe = Pipeline.from_pretrained(args.model)
scenes = examples("test", args.repeats + 1, start=1000)
requests = {
    "understand": lambda e: pipe.understand(e.image(), e.qa.question),
    "generate": lambda e: pipe.generate(e.caption, seed=0).image,
    "edit": lambda e: pipe.edit(e.image(), e.edit.instruction, seed=0).image,
}
medians = {}
print(f"{'request':12s} {'median s':>9s} {'runs':>30s}")
for name, run in requests.items():
    run(scenes[0])  # warm-up
    times = []
    for e in scenes[1:]:
        start = time.perf_counter()
        run(e)
        times.append(time.perf_counter() - start)
    medians[name] = statistics.median(times)
    print(f"{name:12s} {medians[name]:9.2f} {' '.join(f'{t:.2f}' for t in times):>30s}")
print(json.dumps({f"{k}_s": round(v, 3) for k, v in {**medians}.items()} | {"threads": args.threads}))
