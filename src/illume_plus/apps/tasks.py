"""`illume-plus generate | edit | understand`: the MLLM's three tasks from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .loading import add_model_arguments, build_pipeline


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 512x512 (HxW), got {text!r}") from None
    return h, w


def _parser(verb: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"illume-plus {verb}")
    if verb == "generate":
        p.add_argument("prompt", nargs="+", help="one image per prompt")
        p.add_argument("--size", type=_parse_size, default=(512, 512), help="HxW; matched to the nearest of the 11 sizes")
        p.add_argument("--guidance-scale", type=float, default=2.0)
        p.add_argument("--any-size", action="store_true", help="keep --size as given (multiples of 64 up to 1024)")
    elif verb == "edit":
        p.add_argument("image", type=Path)
        p.add_argument("instruction")
        p.add_argument("--guidance-scale", type=float, default=1.5)
    else:
        p.add_argument("image", type=Path, nargs="+")
        p.add_argument("--question", "-q", required=True)
        p.add_argument("--max-new-tokens", type=int, default=1024, help="reply budget (their evaluation: 1024)")
    if verb != "understand":
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out", type=Path, default=Path("outputs"), help="folder for the PNG files")
    add_model_arguments(p)
    return p


def _open_image(path: Path):
    from ..utils.images import load_image

    return load_image(path)  # FileNotFoundError / ImageLoadError (a ValueError) with a one-line reason


def main(verb: str, argv: list[str]) -> int:
    args = _parser(verb).parse_args(argv)
    try:
        images = [_open_image(p) for p in ([args.image] if verb == "edit" else args.image if verb == "understand" else [])]
    except (FileNotFoundError, ValueError) as e:
        print(f"illume-plus {verb}: {e}", file=sys.stderr)
        return 2
    pipe = build_pipeline(args)
    if verb == "understand":
        print(pipe.understand(images if len(images) > 1 else images[0], args.question, max_new_tokens=args.max_new_tokens))
        return 0
    if verb == "generate":
        results = pipe.generate(args.prompt, size=args.size, guidance_scale=args.guidance_scale, seed=args.seed,
                                any_size=args.any_size)
    else:
        results = [pipe.edit(images[0], args.instruction, guidance_scale=args.guidance_scale, seed=args.seed)]
    args.out.mkdir(parents=True, exist_ok=True)
    for i, result in enumerate(results):
        path = args.out / f"{verb}_{i:03d}.png"
        result.image.save(path)
        print(f"{path}  {result.size[0]}x{result.size[1]}  semantic {tuple(result.semantic_ids.shape)}  "
              f"pixel {tuple(result.pixel_ids.shape)}")
    return 0
