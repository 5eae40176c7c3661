"""Image-generation speed and memory: our DecodingEngine against an authors'-style loop (and,
with --authors-src, against the authors' released code itself).

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
    python benchmarks/bench_generation.py --preset 384m --batch 1 4 --size 256x256 --threads 2 \
        --authors-src /work/authors_src --authors-python /work/venv-authors/bin/python

`--authors-src DIR --authors-python PY` adds a third column: the AUTHORS' text-to-image
decoding (their ILLUME generate path with their logits processor and CFG, run unmodified by
`authors_generation.py` in an environment with their transformers 4.44.2) on a model of the
same shape with the same weights (ours, handed over in a temporary safetensors file;
`--authors-weights random` skips that), the same prompt ids (built here by our processor), the
same batch, image size, guidance and sampling values, and the same thread count. Its runs are
interleaved with ours; its time is measured inside its process around one whole generation
(prefill included), like ours. `--authors-greedy-check N` first decodes N tokens greedily on
both sides (batch 1) and reports how many ids agree. The authors' side runs fp32 on the CPU.

Presets: tiny (the test preset), mid (10 x 640, full vocabulary), 384m (8 x 1024, 16 heads /
2 KV heads, MLP 3072, tied, full 283,047-row vocabulary: the realistic shape of issue 12).
Both loops run with the same `--threads`; ours then applies its own per-step thread policy
(mllm/threads.py). Runs are interleaved (baseline, engine, baseline, ...) and the median of
`--repeats` counts; the table gives the load average during the runs and the seconds per
whole image at the measured rate (per image of the batch).

Prints a table, then LAST one JSON line: tokens_per_s, baseline_tokens_per_s, speedup,
peak_mem_mb, baseline_peak_mem_mb, preset, batch (of the last configuration) and `results`
(every configuration); with --authors-src also authors_tokens_per_s, speedup_vs_authors
(engine / authors) and authors_peak_mem_mb. tokens = image-frame tokens produced (structural ones included).
Peak memory: CUDA max allocated, or on CPU the peak resident set size sampled during the loop
(`*_extra_mb`: above the resident size when the loop started, i.e. cache + activations).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from illume_plus.mllm.config import IllumePlusConfig
from illume_plus.mllm.engine import DecodingEngine, GenerationRequest
from illume_plus.mllm.frames import FORCED, frame_code_levels, structure_template
from illume_plus.mllm.model import IllumePlus
from illume_plus.mllm.processor import IllumePlusProcessor
from illume_plus.mllm.sampling import GenerationSettings, SamplingConfig
from illume_plus.mllm.text_tokenizer import build_tiny_text_tokenizer
from illume_plus.tokenizer.config import DualViTokConfig
from peak_memory import PeakMemory  # benchmarks/peak_memory.py (this script's folder is on sys.path)

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


def build_processor(preset: str, config: IllumePlusConfig) -> IllumePlusProcessor:
    # mid / 384m: a stand-in tokenizer of Qwen2.5's length, so every id is where it is at full size
    text_tokens = QWEN25_TEXT_TOKENS if preset in ("mid", "384m") else None
    return IllumePlusProcessor.from_text_tokenizer(build_tiny_text_tokenizer(total_size=text_tokens), config)


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


# ---------------------------------------------------------------------- the authors' code
class AuthorsProcess:
    """The authors' text-to-image code at one preset's shape, in their environment
    (authors_generation.py), driven one generation per JSON line."""

    def __init__(self, src: str, python: str, preset: str, threads: int, weights: str = "ours"):
        config = build_config(preset)
        layout = build_processor(preset, config).layout
        shape = {name: getattr(config, name) for name in (
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta",
            "tie_word_embeddings")}
        setup = {"shape": shape, "threads": threads, "weights": None,
                 "layout": {"start_of_image": layout.start_of_image, "end_of_image": layout.end_of_image,
                            "end_of_line": layout.end_of_line, "start_of_level0": layout.start_of_level0,
                            "end_of_level0": layout.end_of_level0, "start_of_level1": layout.start_of_level1,
                            "end_of_level1": layout.end_of_level1, "end_of_text": layout.im_end,
                            "semantic_range": list(layout.semantic_range),
                            "pixel_range": list(layout.pixel_range)}}
        self.folder = None
        if weights == "ours":  # the weights `measure` builds (same seed), so both codes run one model
            from safetensors.torch import save_file

            shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # in memory: 1.5 GB at 384m
            self.folder = tempfile.TemporaryDirectory(prefix="authors_weights_", dir=shm)
            torch.manual_seed(0)
            language_model = IllumePlus(config).language_model
            state = {k: v.contiguous() for k, v in language_model.state_dict().items()
                     if not (config.tie_word_embeddings and k == "lm_head.weight")}
            setup["weights"] = str(Path(self.folder.name) / "language_model.safetensors")
            save_file(state, setup["weights"])
            del language_model, state
        script = str(Path(__file__).resolve().with_name("authors_generation.py"))
        # it builds its model while ours is being built; `generate` waits for its "ready"
        self.process = subprocess.Popen([python, script, src, json.dumps(setup)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        self.ready = False

    def _wait_ready(self) -> None:
        try:
            while (line := self.process.stdout.readline()) and line.strip() != "ready":
                pass  # their code prints while building
        finally:
            if self.folder is not None:
                self.folder.cleanup()  # loaded by now (or the process failed)
                self.folder = None
        if not line:
            raise SystemExit("the authors' process ended before it was ready (see its errors above)")
        self.ready = True

    def generate(self, requests, processor, max_tokens: int, greedy: bool = False) -> dict:
        """One text-to-image generation of the whole batch by their code; their reply
        (seconds, tokens per row, peak memory, ids)."""
        if not self.ready:
            self._wait_ready()
        first = requests[0]
        phase = first.settings.semantic  # their one (temperature, top_k, top_p); pixel top-k = 3 x top_k
        request = {"prompts": [r.prompt.input_ids.tolist() for r in requests],
                   "unconditional": first.unconditional_prompt.input_ids.tolist(),
                   "pad_token_id": processor.layout.pad_token_id, "size": list(first.image_size),
                   "guidance_scale": float(first.guidance_scale), "temperature": phase.temperature,
                   "top_k": phase.top_k, "top_p": phase.top_p, "max_new_tokens": max_tokens,
                   "do_sample": not greedy, "seed": 0}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("the authors' process ended (see its errors above)")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()
        if self.folder is not None:
            self.folder.cleanup()


def greedy_agreement(engine, processor, request, authors: AuthorsProcess, tokens: int) -> str:
    """Greedy image decoding (batch 1) by our engine and by the authors' code: how many of the
    first `tokens` ids agree, e.g. "40/40"."""
    greedy = GenerationSettings(semantic=SamplingConfig(greedy=True), pixel=SamplingConfig(greedy=True))
    request = GenerationRequest(prompt=request.prompt, unconditional_prompt=request.unconditional_prompt,
                                image_size=request.image_size, guidance_scale=request.guidance_scale,
                                settings=greedy, seed=0)
    stream = engine.stream([request])
    ours = []
    for _, step_tokens in stream:
        ours.append(int(step_tokens[0]))
        if len(ours) >= tokens:
            break
    stream.close()
    theirs = authors.generate([request], processor, tokens, greedy=True)["ids"][0]
    same = sum(a == b for a, b in zip(ours, theirs))
    first_difference = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
    note = "" if first_difference is None else f" (first difference at token {first_difference})"
    return f"{same}/{max(len(ours), len(theirs))}{note}"


# ---------------------------------------------------------------------- driver
def measure(preset, batch, size, device, dtype, max_tokens, guidance, repeats, authors=None, greedy_check=0):
    torch.manual_seed(0)
    config = build_config(preset)
    model = IllumePlus(config).to(device=device, dtype=dtype).eval()
    processor = build_processor(preset, config)
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
    if authors is not None:
        loops["authors"] = lambda: authors.generate(requests, processor, steps_wanted)
        if greedy_check:
            row["authors_greedy_check"] = greedy_agreement(engine, processor, requests[0], authors,
                                                           min(greedy_check, frame_tokens))
    times = {name: [] for name in loops}
    counted = {}  # tokens per row each loop produced (its last run)
    loads = []
    with torch.no_grad():
        run_engine(engine, requests, 4)  # warm-up (allocator, lazy imports)
        run_baseline(model, processor, requests, 4)
        if authors is not None:
            authors.generate(requests, processor, 4)
        for _ in range(repeats):  # interleaved, so every loop sees the same machine load
            for name, fn in loops.items():
                if name == "authors":  # timed and measured inside its own process
                    reply = fn()
                    counted[name] = reply["tokens"]
                    times[name].append(reply["seconds"])
                    row["authors_peak_mem_mb"] = reply["peak_mem_mb"]
                    row["authors_extra_mem_mb"] = reply["extra_mem_mb"]
                    loads.append(os.getloadavg()[0])
                    continue
                with PeakMemory(torch.device(device)) as memory:
                    start = time.perf_counter()
                    counted[name] = fn()
                    if torch.device(device).type == "cuda":
                        torch.cuda.synchronize()
                    times[name].append(time.perf_counter() - start)
                row[f"{name}_peak_mem_mb"] = round(memory.peak, 1)
                row[f"{name}_extra_mem_mb"] = round(memory.extra, 1)
                loads.append(os.getloadavg()[0])
    for name in loops:
        seconds = statistics.median(times[name])
        row[f"{name}_tokens_per_s"] = round(counted[name] * batch / seconds, 1)
        row[f"{name}_seconds"] = round(seconds, 2)
        # a whole image at this rate (prefill included in the rate), per image of the batch
        row[f"{name}_s_per_image"] = round(seconds * frame_tokens / counted[name] / batch, 2)
    row["speedup"] = round(row["engine_tokens_per_s"] / row["baseline_tokens_per_s"], 2)
    if authors is not None:
        row["speedup_vs_authors"] = round(row["engine_tokens_per_s"] / row["authors_tokens_per_s"], 2)
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
    p.add_argument("--authors-src", default=None,
                   help="the authors' release (holding ILLUME/ and vision_tokenizer/): adds their code's column")
    p.add_argument("--authors-python", default=sys.executable, help="python of an env with their stack")
    p.add_argument("--authors-weights", default="ours", choices=["ours", "random"],
                   help="their model gets our weights (default) or its own random init")
    p.add_argument("--authors-greedy-check", type=int, default=0, metavar="N",
                   help="first compare N greedily decoded ids (batch 1) of ours and theirs")
    args = p.parse_args(argv)
    if args.authors_src and (torch.device(args.device).type != "cpu" or args.dtype != "float32"):
        p.error("--authors-src: the authors' side runs fp32 on the CPU; use --device cpu --dtype float32")
    if args.authors_greedy_check and args.authors_weights != "ours":
        p.error("--authors-greedy-check needs --authors-weights ours")
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
    with_authors = bool(args.authors_src)
    header = (f"{'preset':>6} {'batch':>5} {'params':>8} {'steps':>5} | {'baseline tok/s':>14} {'s/image':>8} "
              f"{'peak MB':>8} | {'engine tok/s':>12} {'s/image':>8} {'peak MB':>8} | {'speedup':>7} {'load':>5}")
    if with_authors:
        header += f" | {'authors tok/s':>13} {'s/image':>8} {'peak MB':>8} | {'vs authors':>10}"
    print(header)
    print("-" * len(header))
    for preset in args.preset:
        authors = None
        if with_authors:
            authors = AuthorsProcess(args.authors_src, args.authors_python, preset, torch.get_num_threads(),
                                     args.authors_weights)
        try:
            for batch in args.batch:
                r = measure(preset, batch, args.size, args.device, dtype, args.max_tokens, args.guidance_scale,
                            args.repeats, authors=authors,
                            greedy_check=args.authors_greedy_check if batch == args.batch[0] else 0)
                results.append(r)
                line = (f"{r['preset']:>6} {r['batch']:>5} {r['params_m']:>7}M {r['steps']:>5} | "
                        f"{r['baseline_tokens_per_s']:>14} {r['baseline_s_per_image']:>8} "
                        f"{r['baseline_peak_mem_mb']:>8} | {r['engine_tokens_per_s']:>12} "
                        f"{r['engine_s_per_image']:>8} {r['engine_peak_mem_mb']:>8} | "
                        f"{r['speedup']:>6}x {r['load_avg']:>5}")
                if with_authors:
                    line += (f" | {r['authors_tokens_per_s']:>13} {r['authors_s_per_image']:>8} "
                             f"{r['authors_peak_mem_mb']:>8} | {r['speedup_vs_authors']:>9}x")
                    if "authors_greedy_check" in r:
                        line += f"  greedy ids equal: {r['authors_greedy_check']}"
                print(line, flush=True)
        finally:
            if authors is not None:
                authors.close()
    main_result = results[-1]
    authors_figures = {}
    if with_authors:
        authors_figures = {key: main_result[key] for key in (
            "authors_tokens_per_s", "speedup_vs_authors", "authors_peak_mem_mb")}
        authors_figures["authors_src"] = args.authors_src
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
        **authors_figures,
        "results": results,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
