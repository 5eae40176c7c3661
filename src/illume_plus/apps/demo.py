"""`illume-plus tour`: every part of ILLUME+ end to end on a CPU in about a minute.

Random "tiny" weights (nothing can be downloaded), so the pictures are noise; what the demo
shows is that the whole path runs: an image is tokenised into semantic and pixel codes and
decoded back, the MLLM answers a question about it, generates an image from text and edits
the image, and the diffusion decoder turns the generated codes into an image at 2x size.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def _to_tensor(image) -> torch.Tensor:
    from ..utils.images import load_image

    array = np.asarray(load_image(image), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)[None]


def _to_image(tensor: torch.Tensor):
    from PIL import Image

    array = ((tensor[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(array)


def _parse_size(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="illume-plus tour", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("demo_output"), help="folder for the PNGs and summary.json")
    p.add_argument("--image-size", type=_parse_size, default=(256, 256), help="HxW of the input image")
    p.add_argument("--gen-size", type=_parse_size, default=(512, 512), help="HxW of the generated image")
    p.add_argument("--any-size", action="store_true", help="allow a generation size outside the 11 anchors")
    p.add_argument("--diffusion-steps", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from illume_plus import DualViTok, IllumePlus, IllumePlusConfig, Pipeline
    from illume_plus.data.procedural import render_procedural_image
    from illume_plus.evaluation.metrics import psnr
    from illume_plus.mllm.processor import IllumePlusProcessor
    from illume_plus.mllm.text_tokenizer import build_tiny_text_tokenizer

    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    summary, t0 = {"preset": "tiny", "weights": "random"}, time.perf_counter()

    def stage(name: str):
        print(f"[{time.perf_counter() - t0:6.1f}s] {name}", flush=True)

    stage("building the tiny IllumePlus (LLM + DualViTok) with random weights")
    config = IllumePlusConfig.from_name("tiny")
    model = IllumePlus(config).eval()
    tok = DualViTok(config.tokenizer).eval()
    processor = IllumePlusProcessor.from_text_tokenizer(build_tiny_text_tokenizer(), config)  # the preset's own
    pipe = Pipeline(model, vision_tokenizer=tok, processor=processor)

    stage("DualViTok: image -> semantic + pixel codes -> image")
    image = render_procedural_image(args.seed, *args.image_size)
    image.save(args.out / "input.png")
    x = _to_tensor(image)
    with torch.no_grad():
        enc = tok.encode(x)
        recon = tok.decode(enc.semantic_ids, enc.pixel_ids)
    _to_image(recon).save(args.out / "tokenizer_reconstruction.png")
    summary["tokenizer"] = {"semantic_grid": list(enc.semantic_ids.shape[1:]), "pixel_grid": list(enc.pixel_ids.shape[1:]),
                            "psnr_db": float(psnr((recon.clamp(-1, 1) + 1) / 2, (x + 1) / 2)[0])}

    stage("MLLM: understanding")
    summary["understand"] = pipe.understand(image, "What is in the image?", max_new_tokens=16)

    stage(f"MLLM: text-to-image at {args.gen_size[0]}x{args.gen_size[1]} with CFG")
    gen = pipe.generate("a red circle on a blue background", size=args.gen_size, seed=args.seed, any_size=args.any_size)
    gen.image.save(args.out / "generate.png")
    summary["generate"] = {"size": list(gen.size), "semantic_grid": list(gen.semantic_ids.shape),
                           "pixel_grid": list(gen.pixel_ids.shape)}

    stage("MLLM: editing")
    edited = pipe.edit(image, "make the background green", seed=args.seed, any_size=args.any_size,
                       size=args.gen_size if args.any_size else None)
    edited.image.save(args.out / "edit.png")
    summary["edit"] = {"size": list(edited.size)}

    stage("diffusion decoder: the generated codes at 2x resolution")
    diffusion = Pipeline(model, vision_tokenizer=tok, processor=processor, decoder="diffusion",
                         diffusion_steps=args.diffusion_steps)
    big = diffusion.decode_images([gen], seeds=[args.seed])[0]
    big.save(args.out / "generate_diffusion_2x.png")
    summary["diffusion"] = {"size": [big.height, big.width]}

    summary["seconds"] = round(time.perf_counter() - t0, 1)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    stage(f"done: {args.out}/ holds input.png, tokenizer_reconstruction.png, generate.png, edit.png, "
          "generate_diffusion_2x.png, summary.json")
    print(json.dumps(summary))
    return 0
