"""A briefly trained MID-SIZE shape-world model, for `bench_speculative.py --model` (issue 13).

    python benchmarks/train_mid_world_model.py --out runs/world_mid --steps 250
    python benchmarks/bench_speculative.py --model runs/world_mid/final --task t2i edit --batch 1 4

The shipped world model's LLM is 6 x 256 (5.1M parameters); this one is 12 x 384 (MLP 1152,
8 / 4 heads: about 21M), trained from random weights for `--steps` of one stage (adaptors and the
whole LLM, LR 1e-3, batch 16) on the shipped run's data and codes (`train world` writes them to
runs/world/data/mllm), over the shipped run's DualViTok. It is a speed subject, not a model to use:
brief training leaves its distributions flatter than the shipped model's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from illume_plus.world.mllm_recipe import (WorldMllmStage, assemble_pipeline, run_stage, save_text_tokenizer,
                                           world_stages)

MID_LLM = dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=8, num_key_value_heads=4,
               intermediate_size=1152)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/world_mid"))
    parser.add_argument("--world", type=Path, default=Path("runs/world"), help="a finished `train world` folder")
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = args.world / "data" / "mllm"
    tokenizer = args.world / "stage1_tokenizer" / "final"
    for needed in (data / "train" / "mixture.yaml", data / "val" / "mixture.yaml", tokenizer / "config.json"):
        if not needed.is_file():
            raise SystemExit(f"missing {needed}: run `illume-plus train world` first")
    stage = WorldMllmStage("stage2", args.steps, world_stages()[1].groups)
    trained = run_stage(args.out, stage, None, tokenizer, save_text_tokenizer(args.out), data / "train" / "mixture.yaml",
                        data / "val" / "mixture.yaml", 16, None, model_overrides=MID_LLM)
    final = assemble_pipeline(trained, tokenizer, args.out / "final",
                              f"mid-size shape-world model, {args.steps} steps (a speed-benchmark subject)")
    print(f"wrote {final}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
