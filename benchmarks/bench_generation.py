"""Image-generation speed and memory: our DecodingEngine against an authors'-style loop.

Both loops decode the same text-to-image requests (random weights, CFG on) in one run, side
by side. The baseline is written the way the authors' scripts decode (SPEC §6):
  - conditional and unconditional rows as two separate model calls per step, each with its
    own KV cache, each computing full-vocabulary logits;
  - every step (structural tokens included) mixes cond/uncond log-probabilities over the full
    vocabulary, builds a full-vocabulary mask of the allowed tokens, and runs top-k (and top-p
    when < 1) over the full vocabulary;
  - the decoding state (where in the image frame we are) is recomputed on the host from the
    ids every step, so each step syncs to the host.
Ours: one forward for all rows (cond + uncond) on one cache, structural tokens forced without
the LM head, the head applied to the active code range only, no per-step host sync.

    python benchmarks/bench_generation.py --preset 384m --batch 1 4 --size 256x256 --max-tokens 24 --threads 2
    python benchmarks/bench_generation.py ... --load 2        # the same with 2 busy-looping processes

Presets: tiny (the test preset), mid (10 x 640, full vocabulary), 384m (8 x 1024, 16 heads /
2 KV heads, MLP 3072, tied, full 283,047-row vocabulary: the realistic shape of issue 12).
Both loops run with the same `--threads`; ours then applies its own per-step thread policy
(mllm/threads.py). Runs are interleaved (baseline, engine, baseline, ...) and the median of
`--repeats` counts; the table gives the load average during the runs and the seconds per
whole image at the measured rate (per image of the batch).

Prints a table, then LAST one JSON line: tokens_per_s, baseline_tokens_per_s, speedup,
peak_mem_mb, baseline_peak_mem_mb, preset, batch (of the last configuration) and `results`
(every configuration). tokens = image-frame tokens produced (structural ones included).
Peak memory: CUDA max allocated, or on CPU the peak resident set size sampled during the loop
(`*_extra_mb`: above the resident size when the loop started, i.e. cache + activations).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time

import torch

from illume_plus.mllm.config import IllumePlusConfig
from illume_plus.mllm.engine import DecodingEngine, GenerationRequest
from illume_plus.mllm.frames import FORCED, frame_code_levels, structure_template
from illume_plus.mllm.model import IllumePlus
from illume_plus.mllm.processor import IllumePlusProcessor
from illume_plus.mllm.sampling import GenerationSettings
from illume_plus.mllm.text_tokenizer import build_tiny_text_tokenizer
from illume_plus.tokenizer.config import DualViTokConfig

QWEN25_TEXT_TOKENS = 151665  # len(Qwen2.5's tokenizer), SPEC §3
PROMPTS = ["a red circle on a white background", "a cat sitting on a mat", "two people walking in the park",
           "the quick brown fox jumps over the lazy dog"]


def build_config(preset: str) -> IllumePlusConfig:
    if preset == "tiny":  # the test preset: 2 layers of width 64, 256 / 512 codes
        return IllumePlusConfig.from_name("tiny")
    if preset == "mid":
        # ~225M parameters: 10 layers of width 640 and the FULL ILLUME+ vocabulary (Qwen2.5's
        # 151,936 text rows + 131,111 image tokens, codebooks 32,768 / 98,304), so the cost of
        # full-vocabulary logits, masks and sorts is what it is at full size. The vision tower
        # is the tiny one (text-to-image never runs it).
        tokenizer = DualViTokConfig.from_name("tiny", semantic_codebook_size=32768, pixel_codebook_size=98304)
        return IllumePlusConfig.from_name("tiny", tokenizer=tokenizer, hidden_size=640, num_hidden_layers=10,
                                          num_attention_heads=10, num_key_value_heads=2, intermediate_size=1792,
                                          text_vocab_rows=151936)
    if preset == "384m":
        # The realistic shape of issue 12: 8 layers of width 1024 (16 heads, 2 KV heads, MLP
        # 3072, tied embeddings) and the full 283,047-row vocabulary: 384M LLM parameters.
        tokenizer = DualViTokConfig.from_name("tiny", semantic_codebook_size=32768, pixel_codebook_size=98304)
        return IllumePlusConfig.from_name("tiny", tokenizer=tokenizer, hidden_size=1024, num_hidden_layers=8,
                                          num_attention_heads=16, num_key_value_heads=2, intermediate_size=3072,
                                          text_vocab_rows=151936)
    raise ValueError(f"unknown preset {preset!r}: choose 'tiny', 'mid' or '384m'")


# ---------------------------------------------------------------------- memory
class PeakMemory:
    """Peak memory of a block: CUDA max allocated, or sampled RSS on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device

    @staticmethod
    def _rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def __enter__(self):
        gc.collect()
        try:  # hand freed heap back to the OS so the previous loop's peak does not hide this one's
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated() / 2**20
            return self
        self.start = self.peak = self._rss_mb()
        self._stop = threading.Event()

        def sample():
            while not self._stop.is_set():
                self.peak = max(self.peak, self._rss_mb())
                time.sleep(0.002)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._rss_mb())
        self.extra = self.peak - self.start


# ---------------------------------------------------------------------- the two loops
def run_engine(engine: DecodingEngine, requests, max_tokens: int) -> int:
    """Our engine; stops after `max_tokens` steps. Returns the number of steps run."""
    stream = engine.stream(requests)
    steps = 0
    for steps, _ in enumerate(stream, start=1):
        if steps >= max_tokens:
            break
    stream.close()
    return steps


def run_baseline(model, processor, requests, max_tokens: int) -> int:
    """The authors'-style loop (see the module docstring). Returns the number of steps run."""
    layout = processor.layout
    device = model.device
    spec = processor.frame_spec(*requests[0].image_size)
    template = structure_template(layout, spec).tolist()  # forced id per frame position, FORCED at codes
    levels = frame_code_levels(spec).tolist()
    settings = requests[0].settings
    guidance = requests[0].guidance_scale
    generator = torch.Generator(device=device).manual_seed(0)

    cond = model.prefill(processor.collate([r.prompt for r in requests]).to(device))
    uncond = model.prefill(processor.collate([r.unconditional_prompt for r in requests]).to(device))
    masks = {name: processor.collate([getattr(r, name) for r in requests]).attention_mask.to(device)
             for name in ("prompt", "unconditional_prompt")}
    positions = {name: mask.sum(-1, keepdim=True) for name, mask in masks.items()}
    generated: list[list[int]] = [[] for _ in requests]
    vocab = cond.logits.shape[-1]
    steps = min(max_tokens, len(template))
    for step in range(steps):
        # host-side decoding state, recomputed from row 0's ids every step
        position = len(generated[0])
        level = levels[position]
        allowed = torch.full((vocab,), float("-inf"), device=device)  # full-vocabulary mask
        if level == FORCED:
            allowed[template[position]] = 0.0
            phase = settings.semantic
        else:
            start, stop = layout.semantic_range if level == 0 else layout.pixel_range
            allowed[start:stop] = 0.0
            phase = settings.semantic if level == 0 else settings.pixel
        scores = cond.logits.log_softmax(-1)
        scores = guidance * (scores - uncond.logits.log_softmax(-1)) + uncond.logits.log_softmax(-1)
        scores = scores + allowed
        scores = scores / phase.temperature
        if 0 < phase.top_k < vocab:  # transformers' TopK: full-vocabulary topk
            kth = torch.topk(scores, phase.top_k).values[..., -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if phase.top_p < 1.0:  # transformers' TopP: full-vocabulary sort
            sorted_scores, order = scores.sort(descending=False)
            cumulative = sorted_scores.softmax(-1).cumsum(-1)
            drop = cumulative <= 1 - phase.top_p
            drop[..., -1:] = False
            scores = scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))
        next_tokens = torch.multinomial(scores.softmax(-1), 1, generator=generator)
        for row, token in enumerate(next_tokens[:, 0].tolist()):  # per-step host sync
            generated[row].append(token)
        for name, state in (("prompt", cond), ("unconditional_prompt", uncond)):  # two model calls
            masks[name] = torch.cat([masks[name], masks[name].new_ones(len(requests), 1)], dim=1)
            out = model.step(input_ids=next_tokens, attention_mask=masks[name], position_ids=positions[name],
                             past_key_values=state.past_key_values)  # full-vocabulary logits
            positions[name] = positions[name] + 1
            if name == "prompt":
                cond = out
            else:
                uncond = out
    return steps


# ---------------------------------------------------------------------- driver
def measure(preset, batch, size, device, dtype, max_tokens, guidance, repeats):
    torch.manual_seed(0)
    config = build_config(preset)
    model = IllumePlus(config).to(device=device, dtype=dtype).eval()
    # mid: a stand-in tokenizer of Qwen2.5's length, so every id is where it is at full size
    text_tokens = QWEN25_TEXT_TOKENS if preset in ("mid", "384m") else None
    processor = IllumePlusProcessor.from_text_tokenizer(build_tiny_text_tokenizer(total_size=text_tokens), config)
    engine = DecodingEngine(model, processor)
    settings = GenerationSettings.text_to_image()
    requests = [GenerationRequest(prompt=processor.encode_text_to_image(PROMPTS[i % len(PROMPTS)], size=size),
                                  unconditional_prompt=processor.encode_text_to_image(None, size=size),
                                  image_size=size, guidance_scale=guidance, settings=settings, seed=i)
                for i in range(batch)]
    frame_tokens = processor.frame_spec(*size).num_tokens
    steps_wanted = min(max_tokens or frame_tokens, frame_tokens)
    llm_params = sum(p.numel() for p in model.language_model.parameters())
    row = dict(preset=preset, batch=batch, size=f"{size[0]}x{size[1]}", steps=steps_wanted,
               frame_tokens=frame_tokens, params_m=round(llm_params / 1e6, 1),
               vocab=config.vocab_size, device=str(device), dtype=str(dtype).replace("torch.", ""))
    loops = {"baseline": lambda: run_baseline(model, processor, requests, steps_wanted),
             "engine": lambda: run_engine(engine, requests, steps_wanted)}
    times = {name: [] for name in loops}
    loads = []
    with torch.no_grad():
        run_engine(engine, requests, 4)  # warm-up (allocator, lazy imports)
        run_baseline(model, processor, requests, 4)
        for _ in range(repeats):  # interleaved, so both loops see the same machine load
            for name, fn in loops.items():
                with PeakMemory(torch.device(device)) as memory:
                    start = time.perf_counter()
                    steps = fn()
                    if torch.device(device).type == "cuda":
                        torch.cuda.synchronize()
                    times[name].append(time.perf_counter() - start)
                row[f"{name}_peak_mem_mb"] = round(memory.peak, 1)
                row[f"{name}_extra_mem_mb"] = round(memory.extra, 1)
                loads.append(os.getloadavg()[0])
    for name in loops:
        seconds = statistics.median(times[name])
        row[f"{name}_tokens_per_s"] = round(steps * batch / seconds, 1)
        row[f"{name}_seconds"] = round(seconds, 2)
        # a whole image at this rate (prefill included in the rate), per image of the batch
        row[f"{name}_s_per_image"] = round(seconds * frame_tokens / steps / batch, 2)
    row["speedup"] = round(row["engine_tokens_per_s"] / row["baseline_tokens_per_s"], 2)
    row["load_avg"] = round(statistics.median(loads), 1)
    return row


def parse_size(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", nargs="+", default=["tiny", "384m"], choices=["tiny", "mid", "384m"])
    p.add_argument("--batch", nargs="+", type=int, default=[1, 4])
    p.add_argument("--size", type=parse_size, default=(512, 512), help="HxW (default 512x512)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--max-tokens", type=int, default=None, help="cap the steps per run (default: the whole image)")
    p.add_argument("--guidance-scale", type=float, default=2.0)
    p.add_argument("--repeats", type=int, default=3, help="runs per loop, interleaved; the median counts")
    p.add_argument("--load", type=int, default=0, metavar="N",
                   help="start N busy-looping processes for the whole run (a busy machine)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    burners = [multiprocessing.Process(target=_burn, args=(os.getpid(),), daemon=True) for _ in range(args.load)]
    for process in burners:
        process.start()
    try:
        return _run(args, dtype)
    finally:
        for process in burners:
            process.terminate()


def _burn(parent: int) -> None:
    """A CPU-bound load generator (one core's worth); stops when the benchmark is gone."""
    while os.getppid() == parent:
        for _ in range(1_000_000):
            pass


def _run(args, dtype) -> int:

    results = []
    header = (f"{'preset':>6} {'batch':>5} {'params':>8} {'steps':>5} | {'baseline tok/s':>14} {'s/image':>8} "
              f"{'peak MB':>8} | {'engine tok/s':>12} {'s/image':>8} {'peak MB':>8} | {'speedup':>7} {'load':>5}")
    print(header)
    print("-" * len(header))
    for preset in args.preset:
        for batch in args.batch:
            r = measure(preset, batch, args.size, args.device, dtype, args.max_tokens, args.guidance_scale,
                        args.repeats)
            results.append(r)
            print(f"{r['preset']:>6} {r['batch']:>5} {r['params_m']:>7}M {r['steps']:>5} | "
                  f"{r['baseline_tokens_per_s']:>14} {r['baseline_s_per_image']:>8} {r['baseline_peak_mem_mb']:>8} | "
                  f"{r['engine_tokens_per_s']:>12} {r['engine_s_per_image']:>8} {r['engine_peak_mem_mb']:>8} | "
                  f"{r['speedup']:>6}x {r['load_avg']:>5}", flush=True)
    main_result = results[-1]
    print(json.dumps({
        "tokens_per_s": main_result["engine_tokens_per_s"],
        "baseline_tokens_per_s": main_result["baseline_tokens_per_s"],
        "speedup": main_result["speedup"],
        "peak_mem_mb": main_result["engine_peak_mem_mb"],
        "baseline_peak_mem_mb": main_result["baseline_peak_mem_mb"],
        "preset": main_result["preset"],
        "batch": main_result["batch"],
        "load_avg": main_result["load_avg"],
        "size": main_result["size"],
        "device": main_result["device"],
        "dtype": main_result["dtype"],
        "results": results,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
