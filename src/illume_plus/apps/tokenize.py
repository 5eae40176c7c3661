"""`illume-plus tokenize encode | decode | reconstruct`: DualViTok from the command line.

    illume-plus tokenize encode photo.png --out photo_codes.pt        semantic + pixel code grids
    illume-plus tokenize decode photo_codes.pt --out decoded.png
    illume-plus tokenize reconstruct photo.png --out recon.png         prints PSNR

The tokenizer is the default model's (or --model's) vision tokenizer, or --tokenizer: our
DualViTok folder or the authors' pytorch_model.bin (read with the "illume-plus" preset).
A codes file holds {"semantic_ids": (h1, w1), "pixel_ids": (h2, w2), "size": (H, W)} int64.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .options import ArgumentParser, UsageError, open_image


def _parser(verb: str, input_help: str) -> ArgumentParser:
    p = ArgumentParser(prog=f"illume-plus tokenize {verb}")
    p.add_argument("input", type=Path, help=input_help)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", type=Path, default=None, help="a pipeline folder whose vision tokenizer to use")
    p.add_argument("--tokenizer", type=Path, default=None, help="our DualViTok folder or the authors' .bin")
    p.add_argument("--preset", default="illume-plus", help="DualViTok preset for the authors' .bin")
    p.add_argument("--device", default=None)
    return p


def _load_tokenizer(args):
    from ..pipeline_folder import DEFAULT_MODEL_DIR, KIND_PIPELINE, detect, load_vision_tokenizer
    from ..tokenizer.config import DualViTokConfig

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.tokenizer is not None:
        if not args.tokenizer.exists():
            raise FileNotFoundError(f"--tokenizer not found: {args.tokenizer}")
        tok = load_vision_tokenizer(args.tokenizer, DualViTokConfig.from_name(args.preset))
    else:
        folder = args.model or DEFAULT_MODEL_DIR
        if detect(folder) != KIND_PIPELINE:
            raise UsageError(f"--model {folder} is not a pipeline folder; pass --tokenizer for a DualViTok checkpoint")
        tok = load_vision_tokenizer(folder / "vision_tokenizer", None)
    return tok.to(device=device, dtype=torch.float32).eval()


def _check_out(path: Path, suffixes: tuple[str, ...]) -> None:
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"--out {path}: the file name must end in {' or '.join(suffixes)}")


@torch.no_grad()
def _encode(tok, image):
    x = tok.preprocess(image).to(next(tok.parameters()).device)
    enc = tok.encode(x)
    return x, enc.semantic_ids[0].cpu(), enc.pixel_ids[0].cpu()


def _to_pil(pixels):
    from ..mllm.processor import tensor_to_pil

    return tensor_to_pil(pixels[0].float().clamp(-1, 1).cpu())


def encode(argv: list[str]) -> int:
    args = _parser("encode", "an image").parse_args(argv)
    _check_out(args.out, (".pt",))
    image = open_image(args.input)
    tok = _load_tokenizer(args)
    x, semantic, pixel = _encode(tok, image)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"semantic_ids": semantic, "pixel_ids": pixel, "size": torch.tensor(x.shape[-2:])}, args.out)
    print(f"{args.out}  image {x.shape[-2]}x{x.shape[-1]}  semantic {tuple(semantic.shape)}  pixel {tuple(pixel.shape)}")
    return 0


def decode(argv: list[str]) -> int:
    args = _parser("decode", "a codes file written by `tokenize encode`").parse_args(argv)
    _check_out(args.out, (".png", ".jpg", ".webp"))
    if not args.input.is_file():
        raise FileNotFoundError(f"codes file not found: {args.input}")
    try:
        codes = torch.load(args.input, map_location="cpu", weights_only=True)
        semantic, pixel = codes["semantic_ids"].long(), codes["pixel_ids"].long()
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input problem
        raise UsageError(f"{args.input} is not a codes file from `tokenize encode` ({type(e).__name__})") from None
    tok = _load_tokenizer(args)
    for name, ids, size in (("semantic", semantic, tok.config.semantic_codebook_size),
                            ("pixel", pixel, tok.config.pixel_codebook_size)):
        if ids.dim() != 2 or ids.min() < 0 or ids.max() >= size:
            raise UsageError(f"{args.input}: {name}_ids must be a 2-D grid of indices below {size}")
    device = next(tok.parameters()).device
    with torch.no_grad():
        pixels = tok.decode(semantic[None].to(device), pixel[None].to(device))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _to_pil(pixels).save(args.out)
    print(f"{args.out}  {pixels.shape[-2]}x{pixels.shape[-1]}")
    return 0


def reconstruct(argv: list[str]) -> int:
    from ..evaluation.metrics import psnr

    args = _parser("reconstruct", "an image").parse_args(argv)
    _check_out(args.out, (".png", ".jpg", ".webp"))
    image = open_image(args.input)
    tok = _load_tokenizer(args)
    x, semantic, pixel = _encode(tok, image)
    device = x.device
    with torch.no_grad():
        pixels = tok.decode(semantic[None].to(device), pixel[None].to(device)).float().clamp(-1, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _to_pil(pixels).save(args.out)
    score = float(psnr((pixels.cpu() + 1) / 2, (x.float().cpu() + 1) / 2)[0])
    print(f"{args.out}  {pixels.shape[-2]}x{pixels.shape[-1]}  PSNR {score:.2f} dB  "
          f"semantic {tuple(semantic.shape)}  pixel {tuple(pixel.shape)}")
    return 0
