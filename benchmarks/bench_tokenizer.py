"""DualViTok parameter counts and CPU encode/decode time (random weights, eval, no grad, fp32).

    python benchmarks/bench_tokenizer.py --threads 2                  # small: batch 4 @ 224, batch 1 @ 512
    python benchmarks/bench_tokenizer.py --presets illume-plus --cases 1x256 --repeats 1
    python benchmarks/bench_tokenizer.py --threads 2 --compare-src /work/main/src   # before/after, same run
    python benchmarks/bench_tokenizer.py --threads 2 --authors-src /work/authors_src \
        --authors-python /work/venv-authors/bin/python            # against the authors' code (see authors_tokenizer.py)

Configurations: "small" is the authors' small config (the one their code built the parity
fixture with, tests/data/dualvitok_public.json, 4,993,555 parameters: the sizes of our "tiny"
preset); "tiny" and "illume-plus" are our presets (illume-plus holds ~1.35B parameters, ~5.4 GB in fp32). Figures are medians of
`--repeats` runs. `--compare-src DIR` times the DualViTok of another checkout (e.g. the code
before a change) in a subprocess, alternating with this one run by run (who goes first alternates
too), so both see the same machine load. `--authors-src DIR --authors-python PY` does the same with the AUTHORS' DualViTok
(their release, run by `authors_tokenizer.py` in an environment with their transformers 4.44.2),
on the same fixture weights ("small" only). The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from illume_plus import DualViTok, DualViTokConfig

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "dualvitok_public.json"


def build_config(preset: str) -> DualViTokConfig:
    if preset == "small":
        meta = json.loads(FIXTURE.read_text())
        return DualViTokConfig.from_official(meta["dualvitok_config"], vit_config=meta["vit_config"])
    return DualViTokConfig.from_name(preset)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_counts(preset: str) -> dict:
    """Counted on the meta device: nothing is allocated."""
    with torch.device("meta"):
        tok = DualViTok(build_config(preset))
    return {
        "vit": count(tok.semantic_encoder.vit),
        "semantic_head": count(tok.semantic_encoder) - count(tok.semantic_encoder.vit),
        "semantic_decoder": count(tok.semantic_decoder),
        "pixel_encoder": count(tok.pixel_encoder),
        "pixel_decoder": count(tok.pixel_decoder),
        "quantizers_and_convs": sum(count(m) for m in (tok.semantic_quantizer, tok.pixel_quantizer,
                                                       tok.pixel_quant_conv, tok.pixel_post_quant_conv)),
        "total": count(tok),
    }


class Timer:
    """One configuration (preset, batch, size) ready to time: weights and inputs built once."""

    @torch.no_grad()
    def __init__(self, preset: str, batch: int, size: int):
        torch.manual_seed(0)
        self.tok = DualViTok(build_config(preset)).eval()
        self.images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
        self.enc = self.tok.encode(self.images)  # warm-up; also the ids to decode
        self.tok.decode(self.enc.semantic_ids, self.enc.pixel_ids)

    @torch.no_grad()
    def once(self) -> dict:
        start = time.perf_counter()
        self.tok.encode(self.images)
        middle = time.perf_counter()
        self.tok.decode(self.enc.semantic_ids, self.enc.pixel_ids)
        return {"encode_s": middle - start, "decode_s": time.perf_counter() - middle}


def serve(argv) -> None:
    """Subprocess side of --compare-src: build the configurations, then time one run per line read."""
    timers = [Timer(*case) for case in json.loads(argv[0])]
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(timers[int(line)].once()), flush=True)


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "--serve":
        serve(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["small"], help="small, tiny, illume-plus")
    parser.add_argument("--cases", nargs="+", default=["4x224", "1x512"], help="BATCHxSIZE (square images)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (median kept)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--compare-src", default=None, help="another checkout's src/ to time side by side")
    parser.add_argument("--authors-src", default=None, help="the authors' release (a checkout of ILLUME_plus)")
    parser.add_argument("--authors-python", default=sys.executable, help="python of an env with their stack")
    args = parser.parse_args(argv)
    if args.compare_src and args.authors_src:
        parser.error("give --compare-src or --authors-src, not both")
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = [(preset, *map(int, case.lower().split("x"))) for preset in args.presets for case in args.cases]

    other = None
    if args.compare_src:
        env = dict(os.environ, PYTHONPATH=args.compare_src)
        threads = ["--threads", str(torch.get_num_threads())]
        other = subprocess.Popen([sys.executable, "-c", _SERVE_SNIPPET, json.dumps(cases), *threads], env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    elif args.authors_src:
        script = str(Path(__file__).resolve().with_name("authors_tokenizer.py"))
        other = subprocess.Popen([args.authors_python, script, args.authors_src, json.dumps(cases),
                                  str(torch.get_num_threads())], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if other is not None:
        while (line := other.stdout.readline()) and line.strip() != "ready":
            pass  # their code prints while building
        if not line:
            raise SystemExit("the compared process ended before it was ready (see its errors above)")

    results = {"device": "cpu", "dtype": "float32", "threads": torch.get_num_threads(), "torch": torch.__version__,
               "machine": platform.machine(), "compare_src": args.compare_src, "authors_src": args.authors_src,
               "runs": []}
    for index, (preset, batch, size) in enumerate(cases):
        timer = Timer(preset, batch, size)
        ours, theirs, loads = [], [], []
        for repeat in range(args.repeats):  # interleaved run by run; who goes first alternates
            if other is not None and repeat % 2 == 0:
                theirs.append(_time_other(other, index))
            ours.append(timer.once())
            if other is not None and repeat % 2 == 1:
                theirs.append(_time_other(other, index))
            loads.append(os.getloadavg()[0])
        row = {"preset": preset, "batch": batch, "size": size, "parameters": parameter_counts(preset)["total"],
               "load_avg": round(statistics.median(loads), 1)}
        for key in ("encode_s", "decode_s"):
            row[key] = round(statistics.median(r[key] for r in ours), 3)
            if theirs:
                row[f"compare_{key}"] = round(statistics.median(r[key] for r in theirs), 3)
                row[key.replace("_s", "_speedup")] = round(row[f"compare_{key}"] / row[key], 2)
        results["runs"].append(row)
        line = (f"[{preset}] batch {batch} {size}x{size}: encode {row['encode_s']:.3f} s, decode {row['decode_s']:.3f} s")
        if theirs:
            line += (f" | compared: encode {row['compare_encode_s']:.3f} s ({row['encode_speedup']}x), "
                     f"decode {row['compare_decode_s']:.3f} s ({row['decode_speedup']}x)")
        print(line + f" | median of {args.repeats}, load avg {row['load_avg']}", flush=True)
    if other is not None:
        other.stdin.close()
        other.wait()
    print(json.dumps(results))
    return 0


def _time_other(other, index: int) -> dict:
    other.stdin.write(f"{index}\n")
    other.stdin.flush()
    return json.loads(other.stdout.readline())


# The compared checkout runs this file's Timer with ITS OWN illume_plus (PYTHONPATH points there).
_SERVE_SNIPPET = f"""
import runpy, sys, torch
args = sys.argv[1:]
torch.set_num_threads(int(args[2]))
module = runpy.run_path({str(Path(__file__).resolve())!r}, run_name="bench_tokenizer_serve")
module["serve"](args[:1])
"""

if __name__ == "__main__":
    raise SystemExit(main())
