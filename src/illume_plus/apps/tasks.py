"""`illume-plus understand | generate | edit`: the MLLM's three tasks on one command line.

    illume-plus understand photo.png "What is in the picture?"
    illume-plus generate "a red circle" --size 512x512 --out circle.png
    illume-plus edit circle.png "make it blue" --out blue.png

Arguments and input images are checked before the model is loaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .options import (ArgumentParser, UsageError, add_model_options, add_sampling_options, check_any_size, check_model_paths,
                      load_pipeline_from_args, nonempty, open_image, parse_size, sampling_kwargs)
from .progress import image_progress


def _parser(verb: str, description: str) -> argparse.ArgumentParser:
    return ArgumentParser(prog=f"illume-plus {verb}", description=description)


def _check_out(path: Path) -> None:
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise UsageError(f"--out {path}: give an image file name ending in .png, .jpg or .webp")
    if path.exists() and path.is_dir():
        raise UsageError(f"--out {path} is a folder; give a file name")


def _out_paths(out: Path, count: int) -> list[Path]:
    return [out] if count == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(count)]


def _save(results, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    for result, path in zip(results, _out_paths(out, len(results))):
        result.image.save(path)
        print(f"{path}  {result.image.size[1]}x{result.image.size[0]}")


def understand(argv: list[str]) -> int:
    p = _parser("understand", "Answer a question about one image or several (the answer streams to stdout).")
    p.add_argument("image", type=Path, nargs="+", help="one or more images")
    p.add_argument("question", type=nonempty("question"))
    p.add_argument("--max-new-tokens", type=int, default=None, help="reply budget (default: the pipeline's, 1024 "
                                                                       "as in the authors' evaluation)")
    add_sampling_options(p, guidance=False)
    add_model_options(p)
    args = p.parse_args(argv)
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    images = [open_image(path) for path in args.image]
    check_model_paths(args)
    pipe = load_pipeline_from_args(args)
    budget = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
    for piece in pipe.iter_understand(images if len(images) > 1 else images[0], args.question, seed=args.seed,
                                      **budget, **sampling_kwargs(args)):
        print(piece, end="", flush=True)
    print()
    return 0


def generate(argv: list[str]) -> int:
    p = _parser("generate", "Text to image.")
    p.add_argument("prompt", type=nonempty("prompt"), nargs="+", help="one image per prompt")
    p.add_argument("--size", type=parse_size, default=None,
                   help="HxW, matched to the nearest of the 11 generation sizes (default: the model's own)")
    p.add_argument("--any-size", action="store_true", help="keep --size as given (multiples of 64 up to 1024)")
    p.add_argument("--out", type=Path, default=Path("generated.png"), help="PNG file (several prompts: FILE_0, ...)")
    add_sampling_options(p)
    add_model_options(p)
    args = p.parse_args(argv)
    if args.any_size and args.size is not None:
        check_any_size(args.size)
    _check_out(args.out)
    check_model_paths(args)
    pipe = load_pipeline_from_args(args, need_decoder=True)
    with image_progress(pipe, "generating", enabled=not args.quiet):
        results = pipe.generate(args.prompt, size=args.size, guidance_scale=args.guidance_scale, seed=args.seed,
                                any_size=args.any_size, **sampling_kwargs(args))
    _save(results, args.out)
    return 0


def edit(argv: list[str]) -> int:
    p = _parser("edit", "Edit an image by instruction.")
    p.add_argument("image", type=Path)
    p.add_argument("instruction", type=nonempty("instruction"))
    p.add_argument("--size", type=parse_size, default=None, help="HxW of the result (default: nearest to the image's)")
    p.add_argument("--any-size", action="store_true", help="keep --size as given (multiples of 64 up to 1024)")
    p.add_argument("--out", type=Path, default=Path("edited.png"))
    add_sampling_options(p)
    add_model_options(p)
    args = p.parse_args(argv)
    if args.any_size and args.size is not None:
        check_any_size(args.size)
    _check_out(args.out)
    image = open_image(args.image)
    check_model_paths(args)
    pipe = load_pipeline_from_args(args, need_decoder=True)
    with image_progress(pipe, "editing", enabled=not args.quiet):
        result = pipe.edit(image, args.instruction, guidance_scale=args.guidance_scale, seed=args.seed,
                           size=args.size, any_size=args.any_size, **sampling_kwargs(args))
    _save([result], args.out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(generate(sys.argv[1:]))
