"""Write the stand-in default model: the tiny preset with random weights, stored in bfloat16
(a few MB), as a pipeline folder whose card says it is untrained.

    python scripts/make_standin_model.py [OUT]      # default: src/illume_plus/default_model

A trained default model replaces it by writing its own pipeline folder there."""

import shutil
import sys
from pathlib import Path

import torch

from illume_plus.pipeline_folder import DEFAULT_MODEL_DIR, PipelineCard, random_pipeline

out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_MODEL_DIR
if out.exists():
    shutil.rmtree(out)
card = PipelineCard(trained=False, default_size=(256, 256),
                    description="Stand-in: the tiny preset with RANDOM weights (outputs are noise) until a "
                                "trained default model is shipped.",
                    sampling={"generate": {"guidance_scale": 2.0}, "edit": {"guidance_scale": 1.5}})
random_pipeline("tiny", seed=0, weight_dtype=torch.bfloat16).save_pretrained(out, card)
print(f"wrote {out}: {sum(f.stat().st_size for f in out.rglob('*') if f.is_file()) / 1e6:.1f} MB")
