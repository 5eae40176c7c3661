"""The `illume-plus` command. Each subcommand lives with the code it runs; this file only routes.

    illume-plus demo [--out DIR]                     tiny end-to-end run on CPU (random weights)
    illume-plus train tokenizer CONFIG [k=v ...]     DualViTok training recipe
    illume-plus train decoder CONFIG [k=v ...]       diffusion-decoder training recipe
    illume-plus train mllm CONFIG [k=v ...]          MLLM training recipe (one stage per config)
    illume-plus pretokenize LIST --format t2i ...    t2i / edit targets -> code grids, offline
    illume-plus eval tokenizer --data DIR ...        PSNR / SSIM / rFID / codebook use
    illume-plus generate|edit|understand ...         the MLLM's three tasks
    illume-plus app [--port N]                       the web demo (needs the `demo` extra)
"""

from __future__ import annotations

import sys
from importlib import import_module

# (command, what) -> module whose `main(argv)` runs it
_ROUTES = {
    ("train", "tokenizer"): "illume_plus.training.tokenizer",
    ("train", "decoder"): "illume_plus.training.decoder",
    ("train", "mllm"): "illume_plus.training.mllm",
    ("eval", "tokenizer"): "illume_plus.evaluation.tokenizer",
}
_TASKS = ("generate", "edit", "understand")
_SINGLE = {"demo": "illume_plus.apps.demo", "app": "illume_plus.apps.web",
           "pretokenize": "illume_plus.data.mllm.codes"}


def _usage() -> str:
    return __doc__.split("\n", 2)[2]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: illume-plus COMMAND ...\n" + _usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command in _SINGLE:
        return int(import_module(_SINGLE[command]).main(rest) or 0)
    if command in _TASKS:
        return int(import_module("illume_plus.apps.tasks").main(command, rest) or 0)
    whats = sorted(what for cmd, what in _ROUTES if cmd == command)
    if whats:
        if not rest or rest[0] not in whats:
            print(f"usage: illume-plus {command} {{{','.join(whats)}}} ...", file=sys.stderr)
            return 2
        return int(import_module(_ROUTES[(command, rest[0])]).main(rest[1:]) or 0)
    print(f"illume-plus: unknown command {command!r}\nusage: illume-plus COMMAND ...\n{_usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
