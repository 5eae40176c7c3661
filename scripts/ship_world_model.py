"""Install a trained pipeline folder as the packaged default model, its weights stored in 16 bits.

    python scripts/ship_world_model.py runs/world/final [--dtype float16] [--out DIR]

The default model is what `Pipeline.from_pretrained()` and every CLI command without `--model`
load (src/illume_plus/default_model/). Floating-point weights are stored as float16 (half the
size; on CPU they are cast back to float32 when loaded, on GPU to bfloat16); integer tensors
and rotary `inv_freq` buffers stay as they are.
"""

import argparse
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from illume_plus.pipeline_folder import DEFAULT_MODEL_DIR, detect, KIND_PIPELINE

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("folder", type=Path, help="a trained pipeline folder (e.g. runs/world/final)")
parser.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR)
args = parser.parse_args()
if detect(args.folder) != KIND_PIPELINE:
    parser.error(f"{args.folder} is not a pipeline folder (pipeline.json, mllm/, vision_tokenizer/)")
dtype = getattr(torch, args.dtype)

staging = args.out.with_name(args.out.name + ".staging")
shutil.rmtree(staging, ignore_errors=True)
shutil.copytree(args.folder, staging)
for weights in staging.rglob("*.safetensors"):
    tensors = load_file(weights)
    save_file({k: v.to(dtype) if v.is_floating_point() and not k.endswith("inv_freq") else v
               for k, v in tensors.items()}, weights, metadata={"format": "pt"})
shutil.rmtree(args.out, ignore_errors=True)
staging.rename(args.out)
size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
print(f"wrote {args.out}: {size / 1e6:.1f} MB")
