"""`illume-plus train world`: the ILLUME+ recipe on the shape world, stage by stage, resumable.

    illume-plus train world [--out runs/world] [--stages 0,1] [--tokenizer-steps N] [--tokenizer-minutes M]
    illume-plus train world --vit artifacts/world/stage0_vit.safetensors   # reuse the committed step-0 ViT

Stages (each writes into its own folder under --out; a finished stage leaves a marker and is
skipped on the next run, an interrupted one resumes from its latest checkpoint):
  0  text-aligned ViT: the tiny Qwen2-VL tower trained contrastively on captions (`encoder_pretraining`)
  1  DualViTok on world images (SimVQ on both branches), the ViT from stage 0 frozen in it,
     with the project's tokenizer recipe (`training.tokenizer`)
  2  the MLLM, stages 1-3 of the paper, on understanding, text-to-image, editing and chat, then
     the final pipeline folder `--out/final` (`mllm_recipe.py`)
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from ..tokenizer.config import DualViTokConfig
from ..utils.io import save_json
from .render import IMAGE_SIZE, render_scene
from .splits import example

logger = logging.getLogger(__name__)

# The world's DualViTok: the "tiny" preset with a 4-block, 128-wide ViT (the stage-0 encoder),
# a 256-d merged feature, and codebooks sized to the world (SimVQ on both branches).
WORLD_TOKENIZER = dict(
    preset="tiny",
    vit_depth=4, vit_embed_dim=128, vit_num_heads=4, vit_hidden_size=256,
    semantic_codebook_size=256, pixel_codebook_size=512,
    min_pixels=IMAGE_SIZE * IMAGE_SIZE, max_pixels=IMAGE_SIZE * IMAGE_SIZE,
)
DONE = "DONE"


def world_tokenizer_config(**overrides) -> DualViTokConfig:
    fields = {k: v for k, v in WORLD_TOKENIZER.items() if k != "preset"}
    return DualViTokConfig.from_name(WORLD_TOKENIZER["preset"], **{**fields, **overrides})


def write_images(directory: Path, split: str, count: int) -> Path:
    """Render `count` scenes of `split` as PNGs (skips files already there)."""
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = directory / f"{split}_{i:07d}.png"
        if not path.exists():
            tmp = path.with_suffix(".tmp.png")
            render_scene(example(split, i).scene).save(tmp)
            tmp.rename(path)
    return directory


def stage0_alignment(out: Path, steps: int) -> Path:
    from .encoder_pretraining import AlignmentConfig, train_text_aligned_vit
    from .text_tokenizer import build_world_text_tokenizer

    stage = out / "stage0_alignment"
    if not (stage / DONE).exists():
        train_text_aligned_vit(stage, world_tokenizer_config(), build_world_text_tokenizer(), IMAGE_SIZE,
                               AlignmentConfig(steps=steps))
        (stage / DONE).write_text("ok\n")
    return stage / "vit.safetensors"


def stage1_tokenizer(out: Path, vit_path: Path | None, steps: int, minutes: float | None, batch_size: int,
                     num_images: int, lr: float = 5e-4, *, folder: str = "stage1_tokenizer",
                     quantizer: str = "simvq", overrides: dict | None = None) -> Path:
    """Train the world's DualViTok into `out/folder` (resumes; a finished run is skipped) and
    return its `final/` folder. `vit_path=None` freezes a RANDOM ViT in it, `quantizer` and
    `overrides` (DualViTokConfig fields) change the tokenizer: the ablations use these."""
    from ..training.tokenizer import ModelSection, TokenizerTrainingConfig, train
    from ..data import ImageDataConfig
    from ..losses import TokenizerLossConfig
    from ..training.optim import OptimizerConfig
    from ..training.run import TrainSection

    stage = out / folder
    if (stage / DONE).exists():
        return stage / "final"
    images = write_images(out / "data" / "train_images", "train", num_images)
    overrides = {**{k: v for k, v in WORLD_TOKENIZER.items() if k != "preset"}, **(overrides or {})}
    config = TokenizerTrainingConfig(
        # The ViT comes from stage 0 (only its weights are loaded) and stays frozen.
        model=ModelSection(preset=WORLD_TOKENIZER["preset"], quantizer=quantizer, overrides=overrides,
                           vit_weights=None if vit_path is None else str(vit_path),
                           random_vit_teacher=vit_path is None),
        data=ImageDataConfig(source="folder", path=str(images), resize="fixed", size=IMAGE_SIZE),
        # L1 (the paper's text; the release uses MSE): flat shapes need sharp outlines for the
        # detector, and L1 stops averaging edge pixels sooner. The objects' pixels weigh 21x (they are
        # ~5% of an image: unweighted, 800 steps left them blobs and the pixel codebook at 4% use).
        # No LPIPS (no VGG weights offline), no GAN.
        loss=TokenizerLossConfig(reconstruction="l1", saturated_pixel_weight=20.0, perceptual_weight=0.0,
                                 gan_weight=0.0, disc_start=10**9),
        train=TrainSection(output_dir=str(stage), batch_size=batch_size, max_steps=steps, max_minutes=minutes,
                           mixed_precision="no", checkpoint_every=50, keep_last=1, log_every=10,
                           device="cpu"),
    )
    config.generator_optimizer = OptimizerConfig(lr=lr, schedule="cosine", warmup_steps=min(50, steps // 10),
                                                 min_lr_ratio=0.1)
    train(config)
    finished = (stage / "checkpoints" / "latest").exists() and _latest_step(stage) >= steps
    if finished:
        (stage / DONE).write_text("ok\n")
    return stage / "final"


def _latest_step(stage: Path) -> int:
    from ..training.checkpoint import CheckpointManager

    latest = CheckpointManager(stage / "checkpoints").latest()
    return 0 if latest is None else latest.step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="illume-plus train world", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/world", help="working folder (stages, checkpoints, data)")
    parser.add_argument("--stages", default="0,1,2", help="comma-separated stages to run (default: all)")
    parser.add_argument("--alignment-steps", type=int, default=800)
    parser.add_argument("--vit", type=Path, default=None,
                        help="a finished stage-0 ViT (e.g. artifacts/world/stage0_vit.safetensors): skips stage 0")
    parser.add_argument("--tokenizer-steps", type=int, default=2000)
    parser.add_argument("--tokenizer-minutes", type=float, default=None, help="stop stage 1 after this long")
    parser.add_argument("--tokenizer-batch-size", type=int, default=8)
    parser.add_argument("--tokenizer-images", type=int, default=4000)
    parser.add_argument("--tokenizer-lr", type=float, default=1e-3)
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="a finished stage-1 DualViTok folder for stage 2 (default: OUT/stage1_tokenizer/final)")
    parser.add_argument("--mllm-steps", type=int, nargs=3, default=[50, 2300, 300], metavar=("S1", "S2", "S3"),
                        help="steps of the MLLM's three stages")
    parser.add_argument("--mllm-batch-size", type=int, default=16)
    parser.add_argument("--mllm-lr", type=float, default=1e-3)
    parser.add_argument("--mllm-examples", type=int, default=6000, help="training examples (each in all 4 tasks)")
    parser.add_argument("--mllm-minutes", type=float, default=None, help="stop each MLLM stage after this long")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    stages = {s.strip() for s in args.stages.split(",") if s.strip()}
    unknown = stages - {"0", "1", "2"}
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}; the stages are 0, 1 and 2")
    out = Path(args.out)
    vit_path = out / "stage0_alignment" / "vit.safetensors"
    if args.vit is not None:
        if not args.vit.is_file():
            parser.error(f"--vit: no file at {args.vit}")
        vit_path = args.vit
    elif "0" in stages:
        vit_path = stage0_alignment(out, args.alignment_steps)
    if "1" in stages:
        if not vit_path.exists():
            parser.error(f"stage 1 needs the stage-0 encoder at {vit_path}; run stage 0 first")
        stage1_tokenizer(out, vit_path, args.tokenizer_steps, args.tokenizer_minutes, args.tokenizer_batch_size,
                         args.tokenizer_images, args.tokenizer_lr)
    if "2" in stages:
        from .mllm_recipe import stage2_mllm

        tokenizer_dir = args.tokenizer or out / "stage1_tokenizer" / "final"
        if not (tokenizer_dir / "config.json").is_file():
            parser.error(f"stage 2 needs the stage-1 DualViTok at {tokenizer_dir}; run stage 1 first")
        final = stage2_mllm(out, tokenizer_dir, num_train=args.mllm_examples, batch_size=args.mllm_batch_size,
                            steps=tuple(args.mllm_steps), lr=args.mllm_lr, minutes=args.mllm_minutes)
        print(f"the trained pipeline folder: {final}  (illume-plus eval world --model {final})", flush=True)
    save_json({"stages_run": sorted(stages)}, out / "last_run.json")
    return 0


__all__ = ["WORLD_TOKENIZER", "world_tokenizer_config", "write_images", "main"]
