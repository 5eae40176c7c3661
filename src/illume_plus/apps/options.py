"""Options shared by the commands that run the model (understand, generate, edit, chat, demo):
which model, where it runs, sampling, and checks that run BEFORE anything is loaded.

Every user mistake surfaces as a `UsageError` (a ValueError) with one line naming the problem;
the `illume-plus` dispatcher prints it and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..mllm.config import GENERATION_SIZES

GENERATION_SIZE_TEXT = ", ".join(f"{h}x{w}" for h, w in GENERATION_SIZES)
_SAMPLING_OPTIONS = {"temperature": float, "top-k": int, "top-p": float, "repetition-penalty": float}
_PHASES = ("text", "semantic", "pixel")


class UsageError(ValueError):
    """A user error: bad argument, missing or unreadable file. One line."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (`prog: error: ...; see --help`), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def open_image(source, max_side: int | None = None):
    """An upright RGB PIL image from a path, bytes or a PIL image (the package's one loader:
    16-bit scaled, alpha on white, decompression bombs refused from the header), downscaled at
    once to `max_side`; FileNotFoundError / ImageLoadError (a ValueError) naming the file."""
    from ..utils.images import load_image

    return load_image(source, max_side=max_side)


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W), both positive (argparse type)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 512x512 (HxW), got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}; the generation sizes are "
                                         f"{GENERATION_SIZE_TEXT}")
    return h, w


def check_any_size(size: tuple[int, int]) -> None:
    h, w = size
    if h % 64 or w % 64 or h > 1024 or w > 1024:
        raise UsageError(f"--any-size {h}x{w}: each side must be a multiple of 64 up to 1024 "
                         f"(or drop --any-size to use the nearest of {GENERATION_SIZE_TEXT})")


def nonempty(what: str):
    def check(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"the {what} is empty")
        return text
    return check


def add_model_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model (default: the packaged default model)")
    g.add_argument("--model", type=Path, default=None,
                   help="a pipeline folder, or the authors' release: the MLLM folder (its DualViTok and "
                        "SDXL decoder are found next to it) or the folder holding all three")
    g.add_argument("--tokenizer", type=Path, default=None, help="DualViTok: our folder or the authors' pytorch_model.bin")
    g.add_argument("--diffusion-decoder", type=Path, default=None, help="diffusion decoder folder (ours or the authors')")
    g.add_argument("--official", action="store_true", help="read --model as the authors' MLLM folder (only needed "
                                                           "where its config.json does not tell)")
    g.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available); every part "
                                                  "(MLLM, vision tokenizer, diffusion decoder) goes there")
    g.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                   help="default: bfloat16 on GPU, float32 on CPU")
    g.add_argument("--decoder", choices=("pixel", "diffusion"), default=None,
                   help="codes -> pixels with DualViTok's decoder, or the diffusion decoder (2x size); default: "
                        "the diffusion decoder when the model has one")
    g.add_argument("--diffusion-steps", type=int, default=20)
    g.add_argument("--quiet", action="store_true", help="no progress bars or notices")


def add_sampling_options(parser: argparse.ArgumentParser, guidance: bool = True) -> None:
    g = parser.add_argument_group("sampling (default: the model's own; a bare option sets every phase, "
                                  "--text-/--semantic-/--pixel- one phase)")
    g.add_argument("--seed", type=int, default=0)
    if guidance:
        g.add_argument("--guidance-scale", "--cfg", type=float, default=None, help="classifier-free guidance")
        g.add_argument("--speculative", action=argparse.BooleanOptionalAction, default=None,
                       help="speculative Jacobi decoding of images (default on: same distribution, fewer "
                            "forwards; --no-speculative decodes one token per forward)")
    g.add_argument("--preset", choices=("authors", "clean"), default=None,
                   help="sampling preset: the authors' scripts (default) or each setting applied once")
    g.add_argument("--greedy", action="store_true", default=None, help="argmax in every phase")
    for name, kind in _SAMPLING_OPTIONS.items():
        g.add_argument(f"--{name}", type=kind, default=None,
                       help="top-k N: semantic N, pixel 3N" if name == "top-k" else None)
        for phase in _PHASES:
            g.add_argument(f"--{phase}-{name}", type=kind, default=None, help=argparse.SUPPRESS)


def sampling_kwargs(args) -> dict:
    """The Pipeline keyword arguments for the sampling options that were given."""
    out = {}
    if getattr(args, "preset", None):
        out["preset"] = args.preset
    if getattr(args, "greedy", None):
        out["greedy"] = True
    for name in _SAMPLING_OPTIONS:
        key = name.replace("-", "_")
        if getattr(args, key, None) is not None:
            out[key] = getattr(args, key)
        for phase in _PHASES:
            value = getattr(args, f"{phase}_{key}", None)
            if value is not None:
                out[f"{phase}_{key}"] = value
    return out


def check_model_paths(args) -> None:
    """Fail on a missing or unusable model path now, before anything is loaded."""
    from ..pipeline_folder import detect

    for option in ("model", "tokenizer", "diffusion_decoder"):
        path = getattr(args, option, None)
        if path is not None and not Path(path).exists():
            raise FileNotFoundError(f"--{option.replace('_', '-')} not found: {path}")
    if args.model is not None and not args.official:
        detect(args.model)  # names what is wrong with the folder
    if args.diffusion_steps < 1:
        raise UsageError(f"--diffusion-steps must be >= 1, got {args.diffusion_steps}")


def load_pipeline_from_args(args, need_decoder: bool = False):
    """The Pipeline the model options describe; prints a one-line notice for an untrained model."""
    import torch

    from ..pipeline_folder import load_pipeline

    pipe = load_pipeline(args.model, vision_tokenizer=args.tokenizer, diffusion_decoder=args.diffusion_decoder,
                         official=args.official, device=args.device,
                         dtype=getattr(torch, args.dtype) if args.dtype else None,
                         diffusion_steps=args.diffusion_steps)
    if getattr(args, "speculative", None) is not None:
        pipe.speculative = args.speculative
    if args.decoder == "diffusion" and not callable(pipe.decoder):
        raise UsageError("--decoder diffusion: this model has no diffusion decoder; pass --diffusion-decoder DIR")
    if args.decoder == "pixel":
        pipe.decoder = "pixel"
    if need_decoder and pipe.vision_tokenizer is None:
        raise UsageError("no DualViTok weights found next to the model: pass --tokenizer (the authors' "
                         "dualvitok/pytorch_model.bin)")
    if not args.quiet and pipe.card is not None and not pipe.card.trained:
        which = "the default model" if args.model is None else str(args.model)
        print(f"note: {which} is an untrained stand-in (random weights): its outputs are noise", file=sys.stderr)
    return pipe
