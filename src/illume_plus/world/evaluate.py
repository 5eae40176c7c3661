"""`illume-plus eval world`: the shape-world benchmarks, judged by the detector, on held-out seeds.

    illume-plus eval world [--model DIR] [--json OUT] [--count N] [--tokenizer DIR]

--model DIR: a model folder (`pipeline.json`, `mllm/`, `vision_tokenizer/`; default: the shipped
default model). --tokenizer DIR: score only a DualViTok folder (reconstruction figures).
Every accuracy comes with its chance level (`*_chance`, see `metrics.py`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..evaluation.metrics import CodebookUsage, psnr, ssim
from .detector import detect_objects
from .metrics import (edit_chance, edit_success, generation_chance, generation_scores, preservation_psnr,
                      vqa_scores)
from .render import IMAGE_SIZE, changed_cells_mask, render_scene
from .splits import examples

EVAL_SPLIT = "test"


def _to_tensor(images: list[Image.Image]) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def _to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    return [a for a in images.clamp(-1, 1).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).numpy()]


def detector_accuracy(scenes, images) -> float:
    """Fraction of images whose detected object set (kind, colour, size, cell) is the scene's."""
    return sum(sorted(detect_objects(im)) == sorted(s.objects) for s, im in zip(scenes, images)) / len(scenes)


@torch.no_grad()
def tokenizer_figures(tokenizer, count: int, batch_size: int = 16, start: int = 0,
                      corrupt_rate: float | None = None, seed: int = 0) -> dict:
    """Reconstruction PSNR / SSIM, codebook use, and the detector's accuracy on clean renders
    and on their reconstructions, over `count` held-out scenes from test example `start`.

    With `corrupt_rate`, also `corrupted_psnr` / `detector_accuracy_corrupted`: the same codes
    decoded with that fraction of the pixel tokens replaced by uniformly random ids (an MLLM's
    sampling slips; not the training noise, which takes another image's code at the same place)."""
    tokenizer.eval()
    scenes = [e.scene for e in examples(EVAL_SPLIT, count, start)]
    clean = [render_scene(s) for s in scenes]
    semantic_use = CodebookUsage(tokenizer.config.semantic_codebook_size)
    pixel_use = CodebookUsage(tokenizer.config.pixel_codebook_size)
    generator = torch.Generator().manual_seed(seed)
    psnrs, ssims, recon, corrupted_psnrs, corrupted = [], [], [], [], []
    for at in range(0, count, batch_size):
        x = _to_tensor(clean[at:at + batch_size])
        enc = tokenizer.encode(x)
        y = tokenizer.decode_codes(enc.semantic_codes, enc.pixel_codes).clamp(-1, 1)
        semantic_use.update(enc.semantic_ids)
        pixel_use.update(enc.pixel_ids)
        psnrs.append(psnr((y + 1) / 2, (x + 1) / 2))
        ssims.append(ssim((y + 1) / 2, (x + 1) / 2))
        recon += _to_uint8(y)
        if corrupt_rate is not None:
            pixel = enc.pixel_ids.clone()
            wrong = torch.rand(pixel.shape, generator=generator) < corrupt_rate
            pixel[wrong] = torch.randint(0, tokenizer.config.pixel_codebook_size, pixel.shape,
                                         generator=generator)[wrong]
            z = tokenizer.decode(enc.semantic_ids, pixel).clamp(-1, 1)
            corrupted_psnrs.append(psnr((z + 1) / 2, (x + 1) / 2))
            corrupted += _to_uint8(z)
    figures = {
        "tokenizer_psnr": float(torch.cat(psnrs).mean()), "tokenizer_ssim": float(torch.cat(ssims).mean()),
        "tokenizer_semantic_codebook_usage": float(semantic_use.compute()["usage"]),
        "tokenizer_pixel_codebook_usage": float(pixel_use.compute()["usage"]),
        "detector_accuracy_clean": detector_accuracy(scenes, clean),
        "detector_accuracy_reconstructed": detector_accuracy(scenes, recon),
        "tokenizer_images": count,
    }
    if corrupt_rate is not None:
        figures.update(corrupted_psnr=float(torch.cat(corrupted_psnrs).mean()),
                       detector_accuracy_corrupted=detector_accuracy(scenes, corrupted), corrupted_rate=corrupt_rate)
    return figures


def generation_figures(pipeline, exs, seed: int = 0, **sampling) -> dict:
    """GenEval-style generation scores (and their chance levels) of `pipeline` on the captions of `exs`."""
    size = (IMAGE_SIZE, IMAGE_SIZE)
    generated = pipeline.generate([e.caption for e in exs], size=size, any_size=True, seed=seed, **sampling)
    prompts = [e.scene for e in exs]
    return {**generation_scores(prompts, [detect_objects(r.image) for r in generated]), **generation_chance(prompts)}


def edit_figures(pipeline, exs, seed: int = 0, **sampling) -> dict:
    """Editing success (with its chance level) and preservation PSNR on the instructions of `exs`."""
    size = (IMAGE_SIZE, IMAGE_SIZE)
    edited = pipeline.edit([e.image() for e in exs], [e.edit.instruction for e in exs], size=size, any_size=True,
                           seed=seed, **sampling)
    psnrs = [preservation_psnr(np.asarray(r.image.convert("RGB")), np.asarray(e.image()),
                               ~changed_cells_mask(e.edit.cells)) for r, e in zip(edited, exs)]
    return {"edit_success": edit_success([e.edit for e in exs], [detect_objects(r.image) for r in edited]),
            "edit_success_chance": edit_chance([e.scene for e in exs], [e.edit for e in exs]),
            "edit_preservation_psnr": float(np.mean([min(p, 100.0) for p in psnrs]))}


def mllm_figures(pipeline, count: int, seed: int = 0, start: int = 0) -> dict:
    """Generation, VQA and editing on `count` held-out test examples (from example `start`)
    through a `Pipeline`, with its folder's sampling defaults."""
    exs = examples(EVAL_SPLIT, count, start)
    answers = [pipeline.understand(e.image(), e.qa.question, max_new_tokens=16) for e in exs]
    return {**generation_figures(pipeline, exs, seed), **vqa_scores([e.qa for e in exs], answers),
            **edit_figures(pipeline, exs, seed), "mllm_examples": count}


def load_model_folder(directory: Path | None):
    """(Pipeline, DualViTok) from a pipeline folder (None: the packaged default model), in fp32 on CPU."""
    from ..pipeline import Pipeline

    pipeline = Pipeline.from_pretrained(directory, device="cpu", dtype=torch.float32)
    tokenizer = pipeline.vision_tokenizer
    if tokenizer is None:
        raise ValueError(f"{directory or 'the default model'} has no vision_tokenizer/: cannot decode images")
    return pipeline, tokenizer.float()


def print_table(figures: dict, file=sys.stdout) -> None:
    print(f"{'metric':44s} {'value':>10s} {'chance':>10s}", file=file)
    for key, value in figures.items():
        if key.endswith("_chance") or key.endswith("_majority") or not isinstance(value, float):
            continue
        chance = figures.get(f"{key}_chance")
        chance_text = f"{chance:10.4f}" if chance is not None else f"{'':10s}"
        value_text = f"{value:10.4f}" if math.isfinite(value) else f"{value:>10}"
        print(f"{key:44s} {value_text} {chance_text}", file=file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="illume-plus eval world", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--tokenizer", type=Path, default=None, help="score only this DualViTok folder")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--count", type=int, default=64, help="held-out examples per benchmark")
    parser.add_argument("--start", type=int, default=0, help="first test example (other seeds: other scenes)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be >= 1")
    torch.set_num_threads(args.threads)
    started = time.time()
    if args.tokenizer is not None:
        from ..tokenizer.model import DualViTok

        if not (args.tokenizer / "config.json").is_file():
            parser.error(f"no DualViTok folder (config.json) at {args.tokenizer}")
        pipeline, tokenizer = None, DualViTok.from_pretrained(args.tokenizer)
    else:
        pipeline, tokenizer = load_model_folder(args.model)
    figures = tokenizer_figures(tokenizer, args.count, start=args.start)
    if pipeline is not None:
        figures.update(mllm_figures(pipeline, args.count, start=args.start))
    figures["eval_seconds"] = round(time.time() - started, 1)
    print_table(figures)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


__all__ = ["tokenizer_figures", "generation_figures", "edit_figures", "mllm_figures", "detector_accuracy",
           "load_model_folder", "main"]
