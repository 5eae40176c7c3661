"""DualViTok parameter counts and CPU encode/decode time (random weights, eval, no grad, fp32).

    python benchmarks/bench_tokenizer.py                      # tiny and illume-plus at 256x256
    python benchmarks/bench_tokenizer.py --presets tiny --size 512 --repeats 5

The illume-plus preset holds ~1.35B parameters (~5.4 GB in fp32). The last line printed is
one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from illume_plus import DualViTok, DualViTokConfig


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_counts(preset: str) -> dict:
    """Counted on the meta device: nothing is allocated."""
    with torch.device("meta"):
        tok = DualViTok(DualViTokConfig.from_name(preset))
    return {
        "vit": count(tok.semantic_encoder.vit),
        "semantic_head": count(tok.semantic_encoder) - count(tok.semantic_encoder.vit),
        "semantic_decoder": count(tok.semantic_decoder),
        "pixel_encoder": count(tok.pixel_encoder),
        "pixel_decoder": count(tok.pixel_decoder),
        "quantizers_and_convs": sum(count(m) for m in (tok.semantic_quantizer, tok.pixel_quantizer,
                                                       tok.pixel_quant_conv, tok.pixel_post_quant_conv)),
        "total": count(tok),
        "trainable": sum(p.numel() for p in tok.parameters() if p.requires_grad),
    }


def best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@torch.no_grad()
def time_preset(preset: str, size: int, batch: int, repeats: int) -> dict:
    torch.manual_seed(0)
    start = time.perf_counter()
    tok = DualViTok(DualViTokConfig.from_name(preset)).eval()
    build_s = time.perf_counter() - start
    images = torch.rand(batch, 3, size, size) * 2 - 1
    enc = tok.encode(images)  # warm-up (also yields the ids to decode)
    tok.decode(enc.semantic_ids, enc.pixel_ids)
    return {
        "build_s": round(build_s, 3),
        "encode_s": round(best_time(lambda: tok.encode(images), repeats), 4),
        "decode_s": round(best_time(lambda: tok.decode(enc.semantic_ids, enc.pixel_ids), repeats), 4),
        "semantic_grid": list(enc.semantic_ids.shape[1:]),
        "pixel_grid": list(enc.pixel_ids.shape[1:]),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "illume-plus"])
    parser.add_argument("--size", type=int, default=256, help="square image side (multiple of 16)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per preset (best is kept)")
    parser.add_argument("--full-repeats", type=int, default=1, help="timed runs for illume-plus")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    results = {"size": args.size, "batch": args.batch, "device": "cpu", "dtype": "float32",
               "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine(),
               "presets": {}}
    for preset in args.presets:
        params = parameter_counts(preset)
        print(f"[{preset}] parameters: " + ", ".join(f"{k} {v:,}" for k, v in params.items()), flush=True)
        repeats = args.full_repeats if preset == "illume-plus" else args.repeats
        timing = time_preset(preset, args.size, args.batch, repeats)
        print(f"[{preset}] {args.size}x{args.size} batch {args.batch}: encode {timing['encode_s']:.3f} s, "
              f"decode {timing['decode_s']:.3f} s (best of {repeats}; build {timing['build_s']:.1f} s)", flush=True)
        results["presets"][preset] = {"parameters": params, **timing}
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
