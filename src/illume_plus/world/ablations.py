"""`illume-plus ablate world NAME`: the paper's ablations at shape-world scale, one command each.

    illume-plus ablate world simvq            SimVQ vs vanilla VQ (codebook use, PSNR)
    illume-plus ablate world branches         dual vs semantic-only vs pixel-only tokenizer
    illume-plus ablate world input            continuous vs discrete image input (VQA)
    illume-plus ablate world noise            noise injection on / off (10% corrupted pixel tokens)
    illume-plus ablate world coarse_to_fine   semantic-then-pixel vs pixel-only generation
    illume-plus ablate world alignment        text-aligned vs random semantic encoder (VQA, generation)
    illume-plus ablate world all              the six, then OUT/ablations.md (the table in docs/world.md)

An ablation is a set of ARMS. A tokenizer arm is the world's DualViTok (recipe step 1) with one
change; an MLLM arm trains the world's LLM (step 2, one stage: adaptors + LLM from random
weights, on questions and captions) over a tokenizer arm, with one change. Every arm runs at the
same short budget (--tokenizer-steps, --mllm-steps: a fraction of the shipped model's), from the
same seeds and data, so arms compare with each other, not with the shipped model. Arms are shared:
"base" (SimVQ, both branches, noise injection, the text-aligned ViT, continuous input, coarse to
fine) is every ablation's reference and is trained once. Each arm resumes and is skipped when done;
a rerun with another --eval-count only re-scores the finished arms.

Single-branch tokenizers (`DualViTokConfig.branches`): the dropped branch's codes are id 0 and
reach the decoder as zeros, so the MLLM's frame keeps its layout but the dropped grid carries no
information; "pixel only" generation is this: all information comes from the pixel grid, without
the semantic grid's coarse plan.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..utils.io import load_json, save_json
from .render import IMAGE_SIZE

logger = logging.getLogger(__name__)

# name -> how the arm's DualViTok differs from the world's (recipe.WORLD_TOKENIZER, SimVQ)
TOKENIZER_ARMS = {
    "base": {},
    "vq": {"quantizer": "vq"},
    "no_noise": {"overrides": {"noise_batch_rate": 0.0}},
    "semantic_only": {"overrides": {"branches": "semantic"}},
    "pixel_only": {"overrides": {"branches": "pixel"}},
    "random_vit": {"random_vit": True},
}
# name -> (tokenizer arm, MllmDataSection overrides)
MLLM_ARMS = {
    "base": ("base", {}),
    "discrete_input": ("base", {"image_input": "codes"}),
    "semantic_only": ("semantic_only", {}),
    "pixel_only": ("pixel_only", {}),
    "random_vit": ("random_vit", {}),
}
# The ablation MLLMs learn the two measured tasks only: questions (VQA) and captions (generation).
ABLATION_WEIGHTS = {"questions": 1.0, "chat": 0.0, "captions": 1.0, "edits": 0.0}
GENERATION = ["generation_accuracy", "generation_position_accuracy", "generation_count_accuracy",
              "generation_colour_accuracy", "generation_kind_accuracy"]
RECONSTRUCTION = ["tokenizer_psnr", "tokenizer_ssim", "detector_accuracy_reconstructed"]
BASELINES = {"chance": "*chance*", "majority": "*majority answer*"}  # reference rows, when a metric has them


@dataclass
class Ablation:
    title: str
    arms: list  # (label, tokenizer arm, MLLM arm or None)
    metrics: list
    paper: str  # what the paper reports, for the direction


ABLATIONS = {
    "simvq": Ablation("SimVQ vs vanilla VQ", [("SimVQ", "base", None), ("vanilla VQ", "vq", None)],
                      ["tokenizer_semantic_codebook_usage", "tokenizer_pixel_codebook_usage", *RECONSTRUCTION],
                      "SimVQ keeps the codebook in use and reconstructs better"),
    "branches": Ablation("dual vs semantic-only vs pixel-only tokenizer",
                         [("dual", "base", "base"), ("semantic only", "semantic_only", "semantic_only"),
                          ("pixel only", "pixel_only", "pixel_only")],
                         [*RECONSTRUCTION, *GENERATION], "dual reconstructs and generates best"),
    "input": Ablation("continuous vs discrete image input",
                      [("continuous", "base", "base"), ("discrete", "base", "discrete_input")],
                      ["vqa_accuracy"], "continuous input understands better (Table 6)"),
    "noise": Ablation("noise injection on / off",
                      [("noise injection", "base", None), ("no noise", "no_noise", None)],
                      ["tokenizer_psnr", "corrupted_psnr", "detector_accuracy_reconstructed",
                       "detector_accuracy_corrupted"],
                      "noise injection makes decoding robust to wrong pixel tokens"),
    "coarse_to_fine": Ablation("coarse-to-fine vs pixel-only generation",
                               [("semantic then pixel", "base", "base"), ("pixel only", "pixel_only", "pixel_only")],
                               GENERATION, "coarse-to-fine generates better"),
    "alignment": Ablation("text-aligned vs random semantic encoder",
                          [("text-aligned", "base", "base"), ("random", "random_vit", "random_vit")],
                          ["vqa_accuracy", *GENERATION], "the text-aligned encoder understands and generates better"),
}


@dataclass
class Budget:
    tokenizer_steps: int = 400
    mllm_steps: int = 500
    batch_size: int = 16
    train_examples: int = 3000
    eval_count: int = 100
    tokenizer_images: int = 4000


# ----------------------------------------------------------------------------- tokenizer arms
def tokenizer_arm(out: Path, name: str, budget: Budget, vit_path: Path) -> tuple[Path, dict]:
    """Train (or reuse) the tokenizer arm `name`; returns its folder and its figures."""
    from ..tokenizer.model import DualViTok
    from .evaluate import tokenizer_figures
    from .recipe import stage1_tokenizer

    arm = TOKENIZER_ARMS[name]
    folder = f"tokenizer_{name}"
    figures_path = out / folder / "figures.json"
    final = stage1_tokenizer(out, None if arm.get("random_vit") else vit_path, budget.tokenizer_steps, None, 8,
                             budget.tokenizer_images, 1e-3, folder=folder, quantizer=arm.get("quantizer", "simvq"),
                             overrides=arm.get("overrides"))
    count = 2 * budget.eval_count
    if not figures_path.exists() or load_json(figures_path).get("tokenizer_images") != count:
        tokenizer = DualViTok.from_pretrained(final).float().eval()
        save_json(tokenizer_figures(tokenizer, count, corrupt_rate=0.1), figures_path)
    return final, load_json(figures_path)


# ----------------------------------------------------------------------------- MLLM arms
def prepare_mllm_data(out: Path, tokenizer_name: str, tokenizer_dir: Path, budget: Budget) -> tuple[Path, Path]:
    """The shared question + caption data (one folder per split) and this tokenizer arm's caption
    codes beside it (`codes_<arm>/`, with its own mixture file)."""
    from ..data.mllm.codes import pretokenize
    from ..tokenizer.model import DualViTok
    from .mllm_data import mixture_yaml, write_world_mllm_data

    mixtures = []
    for split, num in (("train", budget.train_examples), ("val", 64)):
        folder = out / "data" / "mllm" / split
        if not (folder / "mixture.yaml").exists():
            write_world_mllm_data(folder, split, num, weights=ABLATION_WEIGHTS)
        codes = folder / f"codes_{tokenizer_name}" / "t2i"
        if not (codes / "summary.json").exists():
            tokenizer = DualViTok.from_pretrained(tokenizer_dir).eval()
            pretokenize(folder / "t2i.jsonl", "t2i", codes, tokenizer, [(IMAGE_SIZE, IMAGE_SIZE)], image_root=folder)
        mixture = folder / f"mixture_{tokenizer_name}.yaml"
        mixture.write_text(mixture_yaml(ABLATION_WEIGHTS, codes_dir=f"codes_{tokenizer_name}"))
        mixtures.append(mixture)
    return mixtures[0], mixtures[1]


def mllm_arm(out: Path, name: str, budget: Budget, tokenizer_dir: Path) -> dict:
    """Train (or reuse) the MLLM arm `name` over its tokenizer arm; returns its figures."""
    from .evaluate import EVAL_SPLIT, generation_figures, load_model_folder
    from .metrics import vqa_scores
    from .mllm_recipe import WorldMllmStage, assemble_pipeline, run_stage, save_text_tokenizer, world_stages
    from .splits import examples

    tokenizer_name, data_overrides = MLLM_ARMS[name]
    arm_dir = out / f"mllm_{name}"
    figures_path = arm_dir / "figures.json"
    if figures_path.exists() and load_json(figures_path).get("mllm_examples") == budget.eval_count:
        return load_json(figures_path)  # trained and scored on as many scenes: nothing to redo
    train_mixture, val_mixture = prepare_mllm_data(out, tokenizer_name, tokenizer_dir, budget)
    stage2 = world_stages()[1]
    stage = WorldMllmStage("stage2", budget.mllm_steps, stage2.groups)
    trained = run_stage(arm_dir, stage, None, tokenizer_dir, save_text_tokenizer(out), train_mixture, val_mixture,
                        budget.batch_size, None, data_overrides=data_overrides)
    final = arm_dir / "final"
    if not (final / "pipeline.json").exists():
        assemble_pipeline(trained, tokenizer_dir, final, f"shape-world ablation arm {name!r} (not a usable model)")
    pipeline, tokenizer = load_model_folder(final)
    exs = examples(EVAL_SPLIT, budget.eval_count)
    read = (lambda image: image)
    if data_overrides.get("image_input") == "codes":
        from ..data.mllm import ImageCodeReader

        read = ImageCodeReader(tokenizer, pipeline.processor)
    answers = [pipeline.understand(read(e.image()), e.qa.question, max_new_tokens=16) for e in exs]
    figures = {**generation_figures(pipeline, exs), **vqa_scores([e.qa for e in exs], answers),
               "mllm_examples": budget.eval_count}
    save_json(figures, figures_path)
    return figures


# ----------------------------------------------------------------------------- ablations
def run_ablation(out: Path, name: str, budget: Budget, vit_path: Path) -> dict:
    """Every arm of ablation `name` (trained or reused) and its figures -> OUT/<name>.json."""
    ablation = ABLATIONS[name]
    rows = []
    for label, tokenizer_name, mllm_name in ablation.arms:
        tokenizer_dir, figures = tokenizer_arm(out, tokenizer_name, budget, vit_path)
        if mllm_name is not None:
            figures = {**figures, **mllm_arm(out, mllm_name, budget, tokenizer_dir)}
        rows.append({"arm": label, **{m: figures.get(m) for m in ablation.metrics},
                     **{f"{m}_{base}": figures[f"{m}_{base}"] for m in ablation.metrics for base in BASELINES
                        if f"{m}_{base}" in figures}})
    result = {"ablation": name, "title": ablation.title, "paper": ablation.paper, "rows": rows,
              "budget": vars(budget)}
    save_json(result, out / f"{name}.json")
    return result


def markdown_table(result: dict) -> str:
    metrics = [k for k in result["rows"][0] if k != "arm" and not k.endswith(tuple(f"_{b}" for b in BASELINES))]
    lines = [f"**{result['title']}** (paper: {result['paper']})", "",
             "| arm | " + " | ".join(m.replace("_", " ") for m in metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    for row in result["rows"]:
        lines.append(f"| {row['arm']} | " + " | ".join(_cell(row, m) for m in metrics) + " |")
    for base, label in BASELINES.items():
        values = [result["rows"][0].get(f"{m}_{base}") for m in metrics]
        if any(v is not None for v in values):
            lines.append(f"| {label} | " + " | ".join("" if v is None else f"{v:.2f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def _cell(row: dict, metric: str) -> str:
    value = row.get(metric)
    return "" if value is None else f"{value:.2f}" if "psnr" not in metric else f"{value:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="illume-plus ablate world", description=__doc__.split("\n\n")[0])
    parser.add_argument("ablation", choices=[*ABLATIONS, "all"])
    parser.add_argument("--out", type=Path, default=Path("runs/ablations"), help="working folder (arms, data)")
    parser.add_argument("--vit", type=Path, default=Path("artifacts/world/stage0_vit.safetensors"),
                        help="the text-aligned step-0 ViT (recipe stage 0)")
    parser.add_argument("--tokenizer-steps", type=int, default=Budget.tokenizer_steps)
    parser.add_argument("--mllm-steps", type=int, default=Budget.mllm_steps)
    parser.add_argument("--train-examples", type=int, default=Budget.train_examples)
    parser.add_argument("--eval-count", type=int, default=Budget.eval_count, help="held-out test scenes per figure")
    parser.add_argument("--tokenizer-images", type=int, default=Budget.tokenizer_images)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if not args.vit.is_file():
        parser.error(f"--vit: no file at {args.vit} (train stage 0 with `illume-plus train world --stages 0`)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    budget = Budget(args.tokenizer_steps, args.mllm_steps, train_examples=args.train_examples,
                    eval_count=args.eval_count, tokenizer_images=args.tokenizer_images)
    names = list(ABLATIONS) if args.ablation == "all" else [args.ablation]
    started = time.time()
    tables = []
    for name in names:
        tables.append(markdown_table(run_ablation(args.out, name, budget, args.vit)))
        print(tables[-1], flush=True)
    if args.ablation == "all":
        (args.out / "ablations.md").write_text("\n".join(tables))
    print(json.dumps({"ablations": names, "seconds": round(time.time() - started)}), flush=True)
    return 0


__all__ = ["TOKENIZER_ARMS", "MLLM_ARMS", "ABLATIONS", "Budget", "run_ablation",
           "markdown_table", "main"]
