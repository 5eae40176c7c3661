"""Choose the shape-world model's sampling defaults on VALIDATION scenes (never on test ones).

    python benchmarks/world_sampling_sweep.py --model runs/world/final [--count 64]

For text-to-image and editing, each (CFG, temperature) pair is scored with the world's judges
(generation accuracy; edit success and preservation PSNR); the chosen pair goes into the
folder's pipeline.json ("sampling"). Prints one table per task.
"""

import argparse
import itertools

import torch

from illume_plus.pipeline import Pipeline
from illume_plus.world import examples
from illume_plus.world.evaluate import edit_figures, generation_figures

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--model", default=None)
parser.add_argument("--count", type=int, default=64)
parser.add_argument("--cfg", type=float, nargs="+", default=[1.0, 2.0, 3.0])
parser.add_argument("--temperature", type=float, nargs="+", default=[1.0, 0.7, 0.3])
args = parser.parse_args()
torch.set_num_threads(2)

pipe = Pipeline.from_pretrained(args.model)
exs = examples("val", args.count)
print(f"{'task':9s} {'cfg':>4s} {'temp':>5s} {'accuracy':>9s} {'psnr':>6s}")
for cfg, temp in itertools.product(args.cfg, args.temperature):
    acc = generation_figures(pipe, exs, guidance_scale=cfg, temperature=temp)["generation_accuracy"]
    print(f"{'generate':9s} {cfg:4.1f} {temp:5.2f} {acc:9.3f}", flush=True)
for cfg, temp in itertools.product(args.cfg, args.temperature):
    figures = edit_figures(pipe, exs, guidance_scale=cfg, temperature=temp)
    print(f"{'edit':9s} {cfg:4.1f} {temp:5.2f} {figures['edit_success']:9.3f} {figures['edit_preservation_psnr']:6.2f}",
          flush=True)
