"""`illume-plus chat`: a multi-turn conversation in the terminal.

    you> what is in photo.png?              an image path in a message attaches that image
    you> draw an image of a red circle       -> saved as chat_outputs/image_01.png, now the current image
    you> make it blue                        edits the current image (the last one made or attached)
    you> /use 1                              makes image 1 current again;  /images lists them
    you> /generate ... | /edit ... | /ask ...  force a task;  /quit (or Ctrl+D) ends

The conversation keeps its history (generated images as their codes), so later turns can
refer to earlier ones.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .intent import ANSWER, EDIT, GENERATE, classify
from .options import (ArgumentParser, UsageError, add_model_options, add_sampling_options, check_model_paths,
                      load_pipeline_from_args, open_image, sampling_kwargs)
from .progress import image_progress

_PATH = re.compile(r"[\w./~-]+\.(?:png|jpe?g|webp|bmp|gif|tiff?)\b", re.IGNORECASE)
HELP = __doc__.split("\n\n")[1]


class TerminalChat:
    def __init__(self, pipe, out_dir: Path, seed: int = 0, sampling: dict | None = None, guidance=None,
                 max_new_tokens: int = 256, progress: bool = True, write=print):
        self.pipe, self.out_dir, self.seed = pipe, out_dir, seed
        self.sampling, self.guidance, self.max_new_tokens = dict(sampling or {}), guidance, max_new_tokens
        self.session = pipe.chat()
        self.saved: list[Path] = []  # every image made in this chat, in order
        self.current = None  # what "it" refers to: a PIL image (attached) or an ImageResult (made)
        self.progress = progress
        self.write = write
        self._sent: list = []  # attached images already in the history

    def handle(self, line: str) -> bool:
        """Run one line; False when the chat should end."""
        line = line.strip()
        if not line:
            return True
        if line in ("/quit", "/exit"):
            return False
        if line == "/help":
            self.write(HELP)
            return True
        if line == "/images":
            self.write("\n".join(f"{i + 1}: {p}" for i, p in enumerate(self.saved)) or "no images yet")
            return True
        if line.startswith("/use"):
            return self._use(line)
        try:
            self._turn(line)
        except (ValueError, FileNotFoundError) as e:  # a bad path, an empty command: say so, keep chatting
            self.write(f"error: {' '.join(str(e).split())}")
        return True

    def _use(self, line: str) -> bool:
        try:
            index = int(line.split()[1]) - 1
            self.current = self.session.images[index] if 0 <= index < len(self.session.images) else None
        except (IndexError, ValueError):
            self.current = None
        self.write(f"image {index + 1} is current" if self.current is not None else "usage: /use N (see /images)")
        return True

    def _turn(self, line: str) -> None:
        attached = [open_image(path, max_side=1024) for path in _PATH.findall(line) if Path(path).expanduser().is_file()]
        if attached:
            self.current = attached[-1]
        intent = classify(line, has_image=self.current is not None)
        if intent.task == GENERATE:
            with image_progress(self.pipe, "generating", enabled=self.progress):
                result = self.session.generate(intent.text, guidance_scale=self.guidance or 2.0, seed=self.seed,
                                               **self.sampling)
            self._made(result)
        elif intent.task == EDIT:
            with image_progress(self.pipe, "editing", enabled=self.progress):
                result = self.session.edit(intent.text, image=self.current, guidance_scale=self.guidance or 1.5,
                                           seed=self.seed, **self.sampling)
            self._made(result)
        else:
            images = attached or ([] if self.current is None or self._in_history(self.current) else [self.current])
            text_sampling = {k: v for k, v in self.sampling.items() if k.startswith("text_")}
            pieces = []
            self.session.send(intent.text, images=images, max_new_tokens=self.max_new_tokens, seed=self.seed,
                              stream=lambda piece: (pieces.append(piece), self.write(piece, end="", flush=True)),
                              **text_sampling)
            self._sent += images
            self.write("" if pieces else "(empty answer)")

    def _in_history(self, image) -> bool:
        return any(image is seen for seen in [*self.session.images, *self._sent])

    def _made(self, result) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"image_{len(self.saved) + 1:02d}.png"
        result.image.save(path)
        self.saved.append(path)
        self.current = result
        self.write(f"[image {len(self.saved)}: {path}  {result.image.size[1]}x{result.image.size[0]}]")


def main(argv: list[str]) -> int:
    p = ArgumentParser(prog="illume-plus chat", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("chat_outputs"), help="folder for the images made")
    p.add_argument("--max-new-tokens", type=int, default=256)
    add_sampling_options(p)
    add_model_options(p)
    args = p.parse_args(argv)
    if args.max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    check_model_paths(args)
    pipe = load_pipeline_from_args(args, need_decoder=True)
    chat = TerminalChat(pipe, args.out, seed=args.seed, sampling=sampling_kwargs(args), guidance=args.guidance_scale,
                        max_new_tokens=args.max_new_tokens, progress=not args.quiet)
    interactive = sys.stdin.isatty()
    if interactive:
        print("illume-plus chat: /help for commands, /quit to end")
    while True:
        try:
            line = input("you> " if interactive else "")
        except EOFError:
            break
        if not chat.handle(line):
            break
    return 0


__all__ = ["TerminalChat", "main", "ANSWER"]
