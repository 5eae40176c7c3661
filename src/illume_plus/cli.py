"""The `illume-plus` command: a routing table, nothing else.

Each subcommand is one registration: a verb in COMMANDS, or a `train X` / `eval X` /
`tokenize X` target in GROUPS, mapped to "module:function" where `function(argv) -> int`
parses its own arguments. To add `illume-plus train world`:

    GROUPS[("train", "world")] = ("illume_plus.world.train:main", "train the shape-world model")

Errors: a user mistake (a ValueError or a missing file, e.g. `UsageError`, `ImageLoadError`,
`ModelFolderError`) prints ONE line `illume-plus VERB: error: ...` and exits with 2; `--debug`
anywhere on the line shows the traceback instead. Other exceptions are bugs and show theirs.
"""

from __future__ import annotations

import sys
from importlib import import_module

COMMANDS = {
    "demo": ("illume_plus.apps.web:main", "the web demo: one conversation to understand, generate and edit"),
    "understand": ("illume_plus.apps.tasks:understand", "answer a question about images"),
    "generate": ("illume_plus.apps.tasks:generate", "text to image"),
    "edit": ("illume_plus.apps.tasks:edit", "edit an image by instruction"),
    "chat": ("illume_plus.apps.chat:main", "a multi-turn conversation in the terminal"),
    "info": ("illume_plus.apps.info:main", "what a checkpoint folder holds"),
    "convert": ("illume_plus.apps.convert:main", "the authors' checkpoints -> this package's formats"),
    "tour": ("illume_plus.apps.demo:main", "every part end to end on CPU, writes PNGs (tiny random weights)"),
    "pretokenize": ("illume_plus.data.mllm.codes:main", "t2i / edit targets -> code grids, offline"),
}
GROUPS = {
    ("tokenize", "encode"): ("illume_plus.apps.tokenize:encode", "image -> semantic and pixel codes (.pt)"),
    ("tokenize", "decode"): ("illume_plus.apps.tokenize:decode", "codes (.pt) -> image"),
    ("tokenize", "reconstruct"): ("illume_plus.apps.tokenize:reconstruct", "image -> codes -> image, with PSNR"),
    ("train", "tokenizer"): ("illume_plus.training.tokenizer:main", "the DualViTok recipe (YAML + k=v overrides)"),
    ("train", "decoder"): ("illume_plus.training.decoder:main", "the diffusion-decoder recipe"),
    ("train", "mllm"): ("illume_plus.training.mllm:main", "the MLLM recipe (one stage per config)"),
    ("eval", "tokenizer"): ("illume_plus.evaluation.tokenizer:main", "PSNR / SSIM / rFID / codebook use"),
    ("train", "world"): ("illume_plus.world.recipe:main", "the whole recipe on the shape world (CPU, resumable)"),
    ("eval", "world"): ("illume_plus.world.evaluate:main", "shape-world benchmarks, programmatic judges"),
    ("ablate", "world"): ("illume_plus.world.ablations:main", "the paper's ablations on the shape world"),
}
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def _usage() -> str:
    lines = ["usage: illume-plus COMMAND ... [--debug]", ""]
    lines += [f"  {verb:<22} {what}" for verb, (_, what) in COMMANDS.items()]
    lines += [f"  {f'{group} {target}':<22} {what}" for (group, target), (_, what) in GROUPS.items()]
    lines += ["", "`illume-plus COMMAND --help` for a command's options."]
    return "\n".join(lines)


def _group_usage(group: str) -> str:
    targets = [(t, what) for (g, t), (_, what) in GROUPS.items() if g == group]
    return "\n".join([f"usage: illume-plus {group} {{{','.join(t for t, _ in targets)}}} ...", ""]
                     + [f"  {t:<14} {what}" for t, what in targets])


def _resolve(target: str):
    module, function = target.split(":")
    return getattr(import_module(module), function)


def _route(argv: list[str]) -> tuple[str, object, list[str]] | int:
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command in COMMANDS:
        return command, _resolve(COMMANDS[command][0]), rest
    if any(group == command for group, _ in GROUPS):
        if rest and (command, rest[0]) in GROUPS:
            return f"{command} {rest[0]}", _resolve(GROUPS[(command, rest[0])][0]), rest[1:]
        if rest and rest[0] in ("-h", "--help"):
            print(_group_usage(command))
            return 0
        problem = f"unknown target {rest[0]!r}" if rest else "a target is needed"
        print(f"illume-plus {command}: error: {problem}\n{_group_usage(command)}", file=sys.stderr)
        return 2
    print(f"illume-plus: error: unknown command {command!r}\n{_usage()}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    routed = _route(argv)
    if isinstance(routed, int):
        return routed
    name, function, rest = routed
    try:
        return int(function(rest) or 0)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2, already printed)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else _fail(name, e.code))
    except KeyboardInterrupt:
        print(f"illume-plus {name}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if debug:
            raise
        return _fail(name, e)


def _fail(name: str, error) -> int:
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, KeyError):
        text = f"missing {text}"
    print(f"illume-plus {name}: error: {text}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
