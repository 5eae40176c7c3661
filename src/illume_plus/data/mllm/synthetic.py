"""A procedural MLLM data set: coloured shapes with captions, questions and edits, in the four
list formats, for tests and CPU runs (no download). Everything is a function of the seed.

    python -m illume_plus.data.mllm.synthetic OUT_DIR --num 400 --seed 0

writes OUT_DIR/images/*.png, conversation.jsonl (questions about an image), text.jsonl
(plain chat), t2i.jsonl (caption -> image), edit.jsonl (recolour the shape or the background)
and mixture.yaml (all four; t2i and edit point at OUT_DIR/codes/{t2i,edit}, which
`illume-plus pretokenize` fills).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLORS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 70, 220), "yellow": (240, 210, 40),
          "white": (245, 245, 245), "black": (15, 15, 15)}
SHAPES = ("circle", "square", "triangle")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def render(shape: str, color: str, background: str, size: tuple[int, int], box: tuple[float, ...]) -> Image.Image:
    """`box` = (top, left, bottom, right) as fractions of the image."""
    h, w = size
    image = Image.new("RGB", (w, h), COLORS[background])
    draw = ImageDraw.Draw(image)
    t, l, b, r = box[0] * h, box[1] * w, box[2] * h, box[3] * w
    if shape == "circle":
        draw.ellipse([l, t, r, b], fill=COLORS[color])
    elif shape == "square":
        draw.rectangle([l, t, r, b], fill=COLORS[color])
    else:
        draw.polygon([((l + r) / 2, t), (l, b), (r, b)], fill=COLORS[color])
    return image


def _scene(rng: np.random.Generator) -> dict:
    names = list(COLORS)
    color, background = rng.choice(len(names), size=2, replace=False)
    extent = rng.uniform(0.35, 0.7)
    top, left = rng.uniform(0.05, 0.95 - extent, size=2)
    return {"shape": SHAPES[rng.integers(len(SHAPES))], "color": names[color], "background": names[background],
            "box": (float(top), float(left), float(top + extent), float(left + extent))}


def write_synthetic_data(out_dir: str | Path, num: int = 400, seed: int = 0,
                         sizes: tuple = ((64, 64),)) -> dict[str, Path]:
    """`num` samples of each format; returns {format: list file}."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = {k: [] for k in ("conversation", "text", "t2i", "edit")}
    for i in range(num):
        scene = _scene(rng)
        size = tuple(sizes[rng.integers(len(sizes))])
        name = f"images/{seed}_{i:06d}.png"
        render(scene["shape"], scene["color"], scene["background"], size, scene["box"]).save(out_dir / name)
        caption = f"a {scene['color']} {scene['shape']} on a {scene['background']} background"
        rows["t2i"].append({"image": name, "caption": caption})
        question = [("What shape is in the image?", f"A {scene['shape']}."),
                    ("What color is the shape?", f"It is {scene['color']}."),
                    ("What color is the background?", f"The background is {scene['background']}."),
                    ("Describe the image.", f"The image shows {caption}.")][rng.integers(4)]
        turns = [{"from": "human", "value": f"<image>\n{question[0]}"}, {"from": "gpt", "value": question[1]}]
        if rng.random() < 0.3:  # a second turn about the same image
            turns += [{"from": "human", "value": "And the shape?"}, {"from": "gpt", "value": f"A {scene['shape']}."}]
        rows["conversation"].append({"image": name, "conversations": turns})
        a, b = (int(v) for v in rng.integers(0, 5, size=2))
        rows["text"].append({"conversations": [
            {"from": "human", "value": f"What is {NUMBERS[a]} plus {NUMBERS[b]}?"},
            {"from": "gpt", "value": f"{NUMBERS[a].capitalize()} plus {NUMBERS[b]} is {NUMBERS[a + b]}."}]})
        others = [c for c in COLORS if c not in (scene["color"], scene["background"])]
        new = others[rng.integers(len(others))]
        if rng.random() < 0.5:
            edited, instruction = {**scene, "color": new}, f"make the {scene['shape']} {new}"
        else:
            edited, instruction = {**scene, "background": new}, f"change the background to {new}"
        target = f"images/{seed}_{i:06d}_edit.png"
        render(edited["shape"], edited["color"], edited["background"], size, edited["box"]).save(out_dir / target)
        rows["edit"].append({"source": name, "instruction": instruction, "target": target})
    paths = {}
    for kind, items in rows.items():
        paths[kind] = out_dir / f"{kind}.jsonl"
        paths[kind].write_text("".join(json.dumps(r) + "\n" for r in items))
    (out_dir / "mixture.yaml").write_text(
        "sources:\n"
        "  - {name: questions, format: conversation, path: conversation.jsonl, weight: 1.0}\n"
        "  - {name: chat, format: text, path: text.jsonl, weight: 0.5}\n"
        "  - {name: captions, format: t2i, path: t2i.jsonl, codes: codes/t2i, weight: 1.0}\n"
        "  - {name: edits, format: edit, path: edit.jsonl, codes: codes/edit, weight: 1.0}\n")
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir")
    p.add_argument("--num", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sizes", default="64x64", help="comma-separated HxW")
    args = p.parse_args(argv)
    sizes = tuple(tuple(int(v) for v in s.split("x")) for s in args.sizes.split(","))
    for kind, path in write_synthetic_data(args.out_dir, args.num, args.seed, sizes).items():
        print(kind, path)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
