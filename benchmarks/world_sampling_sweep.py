"""Choose the shape-world model's sampling defaults on VALIDATION scenes (never on test ones).

    python benchmarks/world_sampling_sweep.py --model runs/world/final [--count 64]

For text-to-image and editing, each (CFG, temperature) pair is scored with the world's judges
(generation accuracy; edit success and preservation PSNR); the chosen pair goes into the
folder's pipeline.json ("sampling"). Prints one table per task.
"""

import argparse
import itertools

import numpy as np
import torch

from illume_plus.pipeline import Pipeline
from illume_plus.world import examples
from illume_plus.world.detector import detect_objects
from illume_plus.world.metrics import edit_success, generation_scores, preservation_psnr
from illume_plus.world.render import IMAGE_SIZE, changed_cells_mask

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--model", default=None)
parser.add_argument("--count", type=int, default=64)
parser.add_argument("--cfg", type=float, nargs="+", default=[1.0, 2.0, 3.0])
parser.add_argument("--temperature", type=float, nargs="+", default=[1.0, 0.7, 0.3])
args = parser.parse_args()
torch.set_num_threads(2)

pipe = Pipeline.from_pretrained(args.model)
exs = examples("val", args.count)
size = (IMAGE_SIZE, IMAGE_SIZE)
print(f"{'task':9s} {'cfg':>4s} {'temp':>5s} {'accuracy':>9s} {'psnr':>6s}")
for cfg, temp in itertools.product(args.cfg, args.temperature):
    images = pipe.generate([e.caption for e in exs], size=size, guidance_scale=cfg, temperature=temp, seed=0)
    acc = generation_scores([e.scene for e in exs], [detect_objects(r.image) for r in images])["generation_accuracy"]
    print(f"{'generate':9s} {cfg:4.1f} {temp:5.2f} {acc:9.3f}", flush=True)
for cfg, temp in itertools.product(args.cfg, args.temperature):
    edited = pipe.edit([e.image() for e in exs], [e.edit.instruction for e in exs], size=size, guidance_scale=cfg,
                       temperature=temp, seed=0)
    ok = edit_success([e.edit for e in exs], [detect_objects(r.image) for r in edited])
    psnr = np.mean([min(preservation_psnr(np.asarray(r.image.convert("RGB")), np.asarray(e.image()),
                                          ~changed_cells_mask(e.edit.cells)), 100.0) for r, e in zip(edited, exs)])
    print(f"{'edit':9s} {cfg:4.1f} {temp:5.2f} {ok:9.3f} {psnr:6.2f}", flush=True)
