"""Build a ready-to-use `Pipeline` from command-line style arguments (shared by the CLI and the web demo)."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--model", type=Path, help="an IllumePlus folder (our format, or the authors' with --official)")
    src.add_argument("--config", default=None, help="a named preset with random weights, e.g. 'tiny'")
    g.add_argument("--official", action="store_true", help="--model is the authors' checkpoint folder")
    g.add_argument("--tokenizer", type=Path, default=None,
                   help="DualViTok weights: our folder, or the authors' pytorch_model.bin")
    g.add_argument("--decoder", choices=("pixel", "diffusion"), default="pixel",
                   help="decode image codes with DualViTok's pixel decoder or the diffusion decoder")
    g.add_argument("--diffusion-decoder", type=Path, default=None, help="diffusion decoder folder (with --decoder diffusion)")
    g.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    g.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                   help="default: bfloat16 on GPU, float32 on CPU")


def _dtype(args) -> torch.dtype:
    if args.dtype:
        return getattr(torch, args.dtype)
    return torch.bfloat16 if str(args.device).startswith("cuda") else torch.float32


def load_tokenizer(path: Path, config):
    from illume_plus.tokenizer.model import DualViTok

    path = Path(path)
    if path.is_dir():
        return DualViTok.from_pretrained(path)
    if path.is_file():
        return DualViTok.from_official(path, config)
    raise FileNotFoundError(f"DualViTok weights not found: {path}")


def build_pipeline(args):
    """The Pipeline described by `add_model_arguments`' options."""
    from illume_plus.mllm.config import IllumePlusConfig
    from illume_plus.mllm.model import IllumePlus
    from illume_plus.pipeline import Pipeline

    if args.model is not None:
        if not Path(args.model).exists():
            raise FileNotFoundError(f"model folder not found: {args.model}")
        if args.official:
            from illume_plus.mllm.official import load_official

            model = load_official(args.model)
        else:
            model = IllumePlus.from_pretrained(args.model)
    else:
        name = args.config or "tiny"
        warnings.warn(f"no --model given: using the {name!r} preset with RANDOM weights (outputs are noise)")
        model = IllumePlus(IllumePlusConfig.from_name(name))
    vision_tokenizer = load_tokenizer(args.tokenizer, model.config.tokenizer) if args.tokenizer else None
    decoder = args.decoder
    if decoder == "diffusion" and args.diffusion_decoder is not None:
        from illume_plus.diffusion.pipeline import DiffusionDecoderPipeline

        decoder = DiffusionDecoderPipeline.from_pretrained(args.diffusion_decoder, vision_tokenizer=vision_tokenizer)
    model = model.to(device=args.device, dtype=_dtype(args)).eval()
    return Pipeline(model, vision_tokenizer=vision_tokenizer, decoder=decoder)
