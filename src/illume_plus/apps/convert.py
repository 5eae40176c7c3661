"""`illume-plus convert SRC OUT`: the authors' checkpoints -> this package's formats, with a summary.

    illume-plus convert checkpoints/ my_pipeline                   MLLM + DualViTok (+ SDXL decoder) -> pipeline folder
    illume-plus convert checkpoints/illume_plus-qwen2_5-3b my_pipeline      (DualViTok and decoder found beside it)
    illume-plus convert checkpoints/dualvitok/pytorch_model.bin dualvitok_ours      DualViTok -> our folder
    illume-plus convert checkpoints/dualvitok_sdxl_decoder decoder_ours --tokenizer checkpoints/dualvitok/pytorch_model.bin

Every tensor is checked on the way (strict loading); the result loads without --official.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..pipeline_folder import (KIND_DECODER, KIND_MLLM, KIND_OFFICIAL_MLLM, KIND_OFFICIAL_TOKENIZER, KIND_PIPELINE,
                               KIND_RELEASE, KIND_TOKENIZER, PipelineCard, detect, load_pipeline,
                               load_vision_tokenizer)
from .info import describe
from .options import ArgumentParser, UsageError


def main(argv: list[str]) -> int:
    p = ArgumentParser(prog="illume-plus convert", description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--tokenizer", type=Path, default=None, help="the DualViTok checkpoint, where it is not found "
                                                                "beside the source")
    p.add_argument("--diffusion-decoder", type=Path, default=None)
    p.add_argument("--official", action="store_true", help="read SOURCE as the authors' MLLM folder")
    p.add_argument("--preset", default="illume-plus", help="DualViTok preset for a lone .bin")
    args = p.parse_args(argv)
    for option in ("source", "tokenizer", "diffusion_decoder"):
        path = getattr(args, option)
        if path is not None and not path.exists():
            raise FileNotFoundError(f"{option.replace('_', '-')} not found: {path}")
    if args.out.exists() and any(args.out.iterdir() if args.out.is_dir() else [args.out]):
        raise UsageError(f"{args.out} exists and is not empty; choose a new folder")
    kind = KIND_OFFICIAL_MLLM if args.official else detect(args.source)
    start = time.perf_counter()
    if kind in (KIND_OFFICIAL_MLLM, KIND_MLLM, KIND_RELEASE, KIND_PIPELINE):
        pipe = load_pipeline(args.source, vision_tokenizer=args.tokenizer, diffusion_decoder=args.diffusion_decoder,
                             official=args.official, device="cpu")
        if pipe.vision_tokenizer is None:
            raise UsageError(f"no DualViTok checkpoint beside {args.source}; pass --tokenizer")
        card = pipe.card if kind == KIND_PIPELINE else PipelineCard(
            trained=True, description=f"converted from {args.source.resolve()}")
        pipe.save_pretrained(args.out, card)
    elif kind in (KIND_OFFICIAL_TOKENIZER, KIND_TOKENIZER):
        from ..tokenizer.config import DualViTokConfig

        load_vision_tokenizer(args.source, DualViTokConfig.from_name(args.preset)).save_pretrained(args.out)
    elif kind == KIND_DECODER:
        from ..diffusion.pipeline import DiffusionDecoderPipeline

        DiffusionDecoderPipeline.from_pretrained(args.source, vision_tokenizer=args.tokenizer).save_pretrained(args.out)
    else:  # pragma: no cover - detect() returns one of the kinds above
        raise UsageError(f"cannot convert a {kind}")
    print(f"converted {args.source} ({kind}) in {time.perf_counter() - start:.1f} s:")
    print("\n".join(describe(args.out)))
    return 0
