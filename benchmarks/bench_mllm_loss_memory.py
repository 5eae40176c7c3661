"""Peak memory of the training loss: ours (chunked CE over labelled positions, each chunk
checkpointed) against the naive loss (full-vocabulary fp32 logits over the whole sequence, as the
authors' HF-Trainer code computes it), with the full 283,047-row vocabulary and the 3B model's
width (2048) on a one-layer trunk, at 2k and 4k tokens, forward + backward.

    python benchmarks/bench_mllm_loss_memory.py                    # CPU: peak RSS of a fresh process per case
    python benchmarks/bench_mllm_loss_memory.py --device cuda      # GPU: torch.cuda.max_memory_allocated

Every position is labelled (the worst case for our loss; understanding samples label far fewer).
On CPU each case runs in its own process under an address-space limit (`--limit-gb` above the
process's size after set-up), so a case that needs more fails cleanly and is reported as
"> limit" instead of pushing a shared machine out of memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def run_case(method: str, tokens: int, device: str, dtype: str, chunk: int) -> dict:
    import torch
    import torch.nn.functional as F

    from illume_plus.mllm.config import IllumePlusConfig
    from illume_plus.mllm.model import IllumePlus

    torch.manual_seed(0)
    config = IllumePlusConfig.from_name("illume-plus-3b", num_hidden_layers=1, loss_chunk_size=chunk)
    with torch.device("meta"):
        model = IllumePlus(config)
    head = model.language_model.lm_head  # tied to the embedding: 283,047 x 2048
    weight = torch.nn.Parameter(torch.randn(head.weight.shape, dtype=getattr(torch, dtype), device=device) * 0.02)
    model.language_model.lm_head.weight = weight
    trunk = torch.nn.Linear(2048, 2048, device=device, dtype=weight.dtype)  # the "small trunk"
    inputs = torch.randn(tokens, 2048, device=device, dtype=weight.dtype)
    targets = torch.randint(0, weight.shape[0], (tokens,), device=device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_kib() * 1024
    start = time.perf_counter()
    hidden = trunk(inputs)
    if method == "chunked":
        loss = model.chunked_cross_entropy(hidden, targets)
    else:
        logits = F.linear(hidden, weight).float()  # (tokens, 283047) fp32 at once
        loss = F.cross_entropy(logits, targets)
    loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _peak_rss_kib() * 1024 - base
    return {"method": method, "tokens": tokens, "peak_gib": round(peak / 2**30, 2),
            "seconds": round(time.perf_counter() - start, 1), "loss": round(loss.item(), 4)}


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def _peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", help="head / hidden dtype (bfloat16 as under FSDP on GPUs)")
    p.add_argument("--tokens", default="2048,4096")
    p.add_argument("--chunk", type=int, default=1024, help="loss_chunk_size of our loss")
    p.add_argument("--limit-gb", type=float, default=8.0, help="CPU: address space allowed to a case beyond set-up")
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)  # "method:tokens", run in a child
    args = p.parse_args(argv)
    if args.case:
        method, tokens = args.case.split(":")
        if args.device == "cpu":
            import torch  # noqa: F401  - import first, so the limit counts the case only

            with open("/proc/self/status") as f:
                size = next(int(line.split()[1]) for line in f if line.startswith("VmSize:")) * 1024
            limit = size + int(args.limit_gb * 2**30) + 2**31  # + 2 GiB for the weight set-up
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            print(json.dumps(run_case(method, int(tokens), args.device, args.dtype, args.chunk)))
        except (RuntimeError, MemoryError) as e:
            print(json.dumps({"method": method, "tokens": int(tokens), "peak_gib": f"> {args.limit_gb}",
                              "error": str(e).splitlines()[0][:120]}))
        return 0
    rows = []
    for tokens in args.tokens.split(","):
        for method in ("chunked", "naive"):
            cmd = [sys.executable, __file__, "--case", f"{method}:{tokens}", "--device", args.device,
                   "--dtype", args.dtype, "--chunk", str(args.chunk), "--limit-gb", str(args.limit_gb)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else json.dumps(
                {"method": method, "tokens": int(tokens), "error": out.stderr.strip().splitlines()[-1][:200]})
            rows.append(json.loads(line))
            print(line, flush=True)
    print(f"\nvocabulary 283,047 x width 2048, {args.dtype}, {args.device}; peak memory of forward + backward "
          f"beyond the weights and inputs")
    print(f"{'tokens':>7} {'ours (chunked) GiB':>20} {'naive full logits GiB':>22}")
    for tokens in args.tokens.split(","):
        ours = next(r for r in rows if r["method"] == "chunked" and r["tokens"] == int(tokens))
        naive = next(r for r in rows if r["method"] == "naive" and r["tokens"] == int(tokens))
        print(f"{tokens:>7} {str(ours.get('peak_gib')):>20} {str(naive.get('peak_gib')):>22}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
