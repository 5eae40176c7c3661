"""Speculative Jacobi decoding against one-token-per-forward decoding, side by side in one run.

    python benchmarks/bench_speculative.py                       # the packaged default model, t2i, batch 1
    python benchmarks/bench_speculative.py --model DIR --batch 1 4 --task t2i edit --size 512x512

Both paths decode the same requests (same prompts, sizes, settings and seeds) through the
Pipeline's engine (`speculative=False` / `True`), codes only (no pixel decoding). Steps =
model forwards after the prefill per batch call (= per image at batch 1): the sequential
engine runs one per frame token; the speculative one runs `last_speculative_stats.forwards`.
Wall time: the median over --repeats of the whole decode, prefill included.

Prints a table, the acceptance-length histogram per phase (code tokens fixed by one forward:
how many forwards), and LAST one JSON line with steps_sequential, steps_speculative,
wall_s_sequential, wall_s_speculative, wall_ratio, step_ratio (of the last configuration),
the model description and every configuration under `results`.

Read it with the model in mind: the packaged default model is still an untrained stand-in
(random weights). A random model's next-token distributions barely depend on the context
(nearly the same distribution at every slot), which makes drafts easy to accept: its step
ratio is an upper end, not what a trained model gives (see docs/generation.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter

import torch

PROMPTS = ["a red circle on a white background", "a cat sitting on a mat", "two people walking in the park",
           "the quick brown fox jumps over the lazy dog"]


def parse_size(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def build_requests(pipe, task, batch, size, guidance, index):
    from illume_plus.mllm.engine import GenerationRequest

    settings = pipe._settings("text_to_image" if task == "t2i" else "editing", {})
    requests = []
    for i in range(batch):
        prompt = PROMPTS[(index + i) % len(PROMPTS)]
        seed = 1000 * index + i
        if task == "t2i":
            cond = pipe.processor.encode_text_to_image(prompt, size=size)
            uncond = pipe.processor.encode_text_to_image(None, size=size) if guidance != 1.0 else None
        else:  # editing a random source image of the target size
            source = torch.rand(3, *size, generator=torch.Generator().manual_seed(seed)) * 2 - 1
            cond, uncond, _ = pipe._encode_edit(source, "make it " + prompt, size, with_uncond=guidance != 1.0)
        requests.append(GenerationRequest(prompt=cond, unconditional_prompt=uncond, image_size=size,
                                          guidance_scale=guidance, settings=settings, seed=seed))
    return requests


def measure(pipe, task, batch, size, guidance, prompts, repeats, config):
    engine = pipe.engine
    frame = pipe.processor.frame_spec(*size).num_tokens
    walls = {"sequential": [], "speculative": []}
    steps = {"sequential": [], "speculative": []}
    histogram = {"semantic": Counter(), "pixel": Counter()}
    for index in range(prompts):
        requests = build_requests(pipe, task, batch, size, guidance, index)
        for _ in range(repeats):
            for name, speculative in (("sequential", False), ("speculative", config)):
                start = time.perf_counter()
                engine.generate(requests, speculative=speculative)
                if pipe.model.device.type == "cuda":
                    torch.cuda.synchronize()
                walls[name].append(time.perf_counter() - start)
                if speculative:
                    stats = engine.last_speculative_stats
                    steps[name].append(stats.forwards)
                    for phase in histogram:
                        histogram[phase].update(stats.accepted[phase])
                else:
                    steps[name].append(frame - 1)
    row = dict(task=task, batch=batch, size=f"{size[0]}x{size[1]}", frame_tokens=frame,
               steps_sequential=statistics.mean(steps["sequential"]),
               steps_speculative=round(statistics.mean(steps["speculative"]), 1),
               wall_s_sequential=round(statistics.median(walls["sequential"]), 3),
               wall_s_speculative=round(statistics.median(walls["speculative"]), 3))
    row["step_ratio"] = round(row["steps_sequential"] / row["steps_speculative"], 2)
    row["wall_ratio"] = round(row["wall_s_sequential"] / row["wall_s_speculative"], 2)
    row["mean_accepted"] = {p: round(sum(k * v for k, v in h.items()) / max(1, sum(h.values())), 2)
                            for p, h in histogram.items()}
    row["histogram"] = {p: dict(sorted(h.items())) for p, h in histogram.items()}
    return row


def main(argv=None) -> int:
    from illume_plus import Pipeline
    from illume_plus.mllm.speculative import SpeculativeConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="pipeline folder (default: the packaged default model)")
    p.add_argument("--task", nargs="+", default=["t2i"], choices=["t2i", "edit"])
    p.add_argument("--batch", nargs="+", type=int, default=[1])
    p.add_argument("--size", type=parse_size, default=None, help="HxW (default: the model's default size)")
    p.add_argument("--guidance-scale", type=float, default=None, help="default: the task's (2.0 t2i, 1.5 edit)")
    p.add_argument("--prompts", type=int, default=3, help="batches of different prompts/seeds per configuration")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--window-max", type=int, default=16)
    p.add_argument("--window-init", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = Pipeline.from_pretrained(args.model, device=args.device,
                                    dtype=getattr(torch, args.dtype) if args.dtype else None)
    size = args.size or tuple(pipe.default_size()[0])
    config = SpeculativeConfig(window_init=min(args.window_init, args.window_max), window_max=args.window_max,
                               window_min=min(2, args.window_init, args.window_max))
    card = pipe.card
    model = (args.model or "packaged default model") + (
        "" if card is None else f" ({'trained' if card.trained else 'UNTRAINED: random weights'})")
    params = sum(p.numel() for p in pipe.model.language_model.parameters())
    print(f"model: {model}, LLM {params / 1e6:.1f}M parameters, vocabulary {pipe.model.config.vocab_size}, "
          f"device {args.device}, window {config.window_init} in [{config.window_min}, {config.window_max}]")
    header = (f"{'task':>5} {'batch':>5} {'size':>9} | {'steps seq':>9} {'steps spec':>10} {'ratio':>6} | "
              f"{'wall s seq':>10} {'wall s spec':>11} {'ratio':>6} | mean tokens/forward (sem, pix)")
    print(header)
    print("-" * len(header))
    results = []
    with torch.no_grad():
        pipe.engine.generate(build_requests(pipe, args.task[0], 1, size, 2.0, 0)[:1], speculative=config)  # warm-up
        for task in args.task:
            guidance = args.guidance_scale if args.guidance_scale is not None else (2.0 if task == "t2i" else 1.5)
            for batch in args.batch:
                r = measure(pipe, task, batch, size, guidance, args.prompts, args.repeats, config)
                results.append(r)
                print(f"{task:>5} {batch:>5} {r['size']:>9} | {r['steps_sequential']:>9} {r['steps_speculative']:>10} "
                      f"{r['step_ratio']:>5}x | {r['wall_s_sequential']:>10} {r['wall_s_speculative']:>11} "
                      f"{r['wall_ratio']:>5}x | {r['mean_accepted']['semantic']}, {r['mean_accepted']['pixel']}",
                      flush=True)
    print("acceptance-length histograms (code tokens fixed by one forward: forwards)")
    for r in results:
        for phase, h in r["histogram"].items():
            print(f"  {r['task']} batch {r['batch']} {phase:>8}: {h}")
    last = results[-1]
    print(json.dumps({key: last[key] for key in ("steps_sequential", "steps_speculative", "wall_s_sequential",
                                                  "wall_s_speculative", "wall_ratio", "step_ratio", "task", "batch",
                                                  "size")} | {"model": model, "device": args.device,
                                                             "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
