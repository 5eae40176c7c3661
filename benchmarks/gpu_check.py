"""One-GPU check: a 3B-shaped IllumePlus (random weights, bf16, SDPA) decoding 512x512 images,
one token per forward against speculative Jacobi decoding, at batch 1 and 8.

    bash benchmarks/gpu_check.sh            # on a CUDA machine, <= 5 minutes
    python benchmarks/gpu_check.py --dry-run  # tiny shape on the CPU: checks the script runs

Prints per configuration: forwards per image, tokens/s (frame tokens of all images / wall),
seconds per 512x512 image (wall / batch), peak CUDA memory, and the fraction of the memory
bandwidth limit: each forward reads every LLM weight once (2 bytes in bf16) plus the KV cache,
so bytes per forward / seconds per forward is compared with the bandwidth a large device-to-
device copy reaches on this GPU (measured here, not a datasheet figure). LAST: one JSON line.

Random weights make next-token distributions nearly context-free, so drafts are accepted far
more often than with a trained model: the speculative step ratio here is an upper end; the
sequential figures and the bandwidth fraction are what this check is for.
`--compile` wraps the decoder layers' forward in torch.compile (dynamic shapes); off by default
(untested until run on a GPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

QWEN25_TEXT_TOKENS = 151665


def build(dry_run: bool, device, dtype):
    from illume_plus.mllm.config import IllumePlusConfig
    from illume_plus.mllm.model import IllumePlus
    from illume_plus.mllm.processor import IllumePlusProcessor
    from illume_plus.mllm.text_tokenizer import build_tiny_text_tokenizer
    from illume_plus.tokenizer.config import DualViTokConfig

    if dry_run:
        config = IllumePlusConfig.from_name("tiny")
        tokenizer = build_tiny_text_tokenizer()
    else:  # Qwen2.5-3B's shape with the full ILLUME+ vocabulary (the vision tower stays tiny: t2i never runs it)
        vq = DualViTokConfig.from_name("tiny", semantic_codebook_size=32768, pixel_codebook_size=98304)
        config = IllumePlusConfig.from_name("tiny", tokenizer=vq, hidden_size=2048, num_hidden_layers=36,
                                            num_attention_heads=16, num_key_value_heads=2, intermediate_size=11008,
                                            text_vocab_rows=151936)
        tokenizer = build_tiny_text_tokenizer(total_size=QWEN25_TEXT_TOKENS)
    torch.manual_seed(0)
    with torch.device(device):
        model = IllumePlus(config)
    model = model.to(dtype).eval()
    model.language_model.config._attn_implementation = "sdpa"
    return model, IllumePlusProcessor.from_text_tokenizer(tokenizer, config)


def copy_bandwidth(device) -> float:
    """Bytes/s of a large device-to-device copy (read + write)."""
    if device.type != "cuda":
        return float("nan")
    src = torch.empty(2 * 2**30, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(5):
        dst.copy_(src)
    torch.cuda.synchronize()
    return 2 * src.numel() * 5 / (time.perf_counter() - start)


def run(engine, processor, batch, size, speculative, device):
    from illume_plus.mllm.engine import GenerationRequest
    from illume_plus.mllm.sampling import GenerationSettings

    requests = [GenerationRequest(prompt=processor.encode_text_to_image(f"prompt {i}", size=size),
                                  unconditional_prompt=processor.encode_text_to_image(None, size=size),
                                  image_size=size, guidance_scale=2.0, seed=i,
                                  settings=GenerationSettings.text_to_image()) for i in range(batch)]
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    engine.generate(requests, speculative=speculative)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    frame = processor.frame_spec(*size).num_tokens
    forwards = engine.last_speculative_stats.forwards if speculative else frame - 1
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return dict(batch=batch, speculative=bool(speculative), forwards_per_image=forwards, wall_s=round(wall, 2),
                tokens_per_s=round(frame * batch / wall, 1), s_per_image=round(wall / batch, 2),
                peak_mem_gib=round(peak, 2), s_per_forward=wall / forwards)


def main(argv=None) -> int:
    from illume_plus.mllm.engine import DecodingEngine

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="tiny shape, CPU, 64x64: only checks that it runs")
    p.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    p.add_argument("--compile", action="store_true", help="torch.compile the decoder layers (dynamic shapes)")
    args = p.parse_args(argv)
    device = torch.device("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda")
    if device.type != "cuda" and not args.dry_run:
        print("no CUDA device: use --dry-run to check the script on the CPU", file=sys.stderr)
        return 2
    dtype = torch.float32 if args.dry_run else torch.bfloat16
    size = (64, 64) if args.dry_run else (512, 512)
    model, processor = build(args.dry_run, device, dtype)
    if args.compile:
        for layer in model.language_model.model.layers:
            layer.forward = torch.compile(layer.forward, dynamic=True)
    engine = DecodingEngine(model, processor)
    weight_bytes = sum(t.numel() * t.element_size() for t in model.language_model.parameters())
    bandwidth = copy_bandwidth(device)
    print(f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, LLM weights "
          f"{weight_bytes / 2**30:.2f} GiB, copy bandwidth {bandwidth / 1e9:.0f} GB/s, image {size[0]}x{size[1]}")
    run(engine, processor, 1, (64, 64), False, device)  # warm-up (kernels, allocator)
    run(engine, processor, 1, (64, 64), True, device)
    results = []
    print(f"{'batch':>5} {'mode':>11} {'fwd/img':>8} {'tok/s':>8} {'s/img':>7} {'peak GiB':>8} {'BW frac':>7}")
    for batch in args.batch:
        for speculative in (False, True):
            r = run(engine, processor, batch, size, speculative, device)
            # per forward: every weight once, plus (roughly) the KV cache of all rows at mid-frame
            r["bandwidth_fraction"] = round(weight_bytes / r.pop("s_per_forward") / bandwidth, 3)
            results.append(r)
            print(f"{batch:>5} {'speculative' if speculative else 'sequential':>11} {r['forwards_per_image']:>8} "
                  f"{r['tokens_per_s']:>8} {r['s_per_image']:>7} {r['peak_mem_gib']:>8} {r['bandwidth_fraction']:>7}",
                  flush=True)
    print(json.dumps({"device": str(device), "image": f"{size[0]}x{size[1]}", "weights_gib": round(weight_bytes / 2**30, 2),
                      "copy_bandwidth_gbs": round(bandwidth / 1e9, 1), "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
