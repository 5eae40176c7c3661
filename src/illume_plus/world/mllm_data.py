"""The world as MLLM training data, in the four list formats of `data/mllm` (recipe step 2's input).

    python -m illume_plus.world.mllm_data runs/world/mllm_data/train --split train --num 4000

writes OUT/images/*.png, conversation.jsonl (a question or a "describe" request about an image),
text.jsonl (plain chat), t2i.jsonl (caption -> image), edit.jsonl (source, instruction, exact
target) and mixture.yaml (t2i and edit point at OUT/codes/{t2i,edit}, which
`illume-plus pretokenize ... --sizes 128x128` fills with the world's DualViTok).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .splits import example
from .text import chat_turn

# name -> (format, list file, codes folder or None)
SOURCES = {"questions": ("conversation", "conversation.jsonl", None), "chat": ("text", "text.jsonl", None),
           "captions": ("t2i", "t2i.jsonl", "codes/t2i"), "edits": ("edit", "edit.jsonl", "codes/edit")}
WEIGHTS = {"questions": 1.0, "chat": 0.2, "captions": 1.0, "edits": 1.0}


def mixture_yaml(weights: dict[str, float] = WEIGHTS, codes_dir: str = "codes") -> str:
    """The mixture of the sources with a positive weight; the code grids are read from `codes_dir`
    (a DualViTok's pretokenised targets; another folder for another tokenizer)."""
    lines = ["sources:"]
    for name, (fmt, path, codes) in SOURCES.items():
        if weights.get(name, 0) <= 0:
            continue
        codes = codes and codes.replace("codes/", f"{codes_dir}/", 1)
        codes_field = f", codes: {codes}" if codes else ""
        lines.append(f"  - {{name: {name}, format: {fmt}, path: {path}{codes_field}, weight: {weights[name]}}}")
    return "\n".join(lines) + "\n"


def _turns(question: str, answer: str, image: bool) -> list[dict]:
    return [{"from": "human", "value": f"<image>\n{question}" if image else question}, {"from": "gpt", "value": answer}]


def write_world_mllm_data(out_dir: str | Path, split: str = "train", num: int = 1000, start: int = 0,
                          weights: dict[str, float] = WEIGHTS) -> dict[str, Path]:
    """Examples `start .. start+num-1` of `split`, one row of each format per example, and
    mixture.yaml (written last) weighting the four sources by `weights`."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = {k: [] for k in ("conversation", "text", "t2i", "edit")}
    for i in range(start, start + num):
        e = example(split, i)
        name, target = f"images/{split}_{i:07d}.png", f"images/{split}_{i:07d}_edit.png"
        for path, image in ((name, e.image), (target, e.edited_image)):
            if not (out_dir / path).exists():
                image().save(out_dir / path)
        rows["t2i"].append({"image": name, "caption": e.caption})
        # Questions three times as often as "describe" requests: short answers are the VQA target.
        qa = e.describe if i % 4 == 3 else e.qa
        rows["conversation"].append({"image": name, "conversations": _turns(qa.question, qa.answer, True)})
        rows["text"].append({"conversations": _turns(*chat_turn(np.random.default_rng([e.seed, 9])), False)})
        rows["edit"].append({"source": name, "instruction": e.edit.instruction, "target": target})
    paths = {}
    for kind, items in rows.items():
        paths[kind] = out_dir / f"{kind}.jsonl"
        paths[kind].write_text("".join(json.dumps(r) + "\n" for r in items))
    (out_dir / "mixture.yaml").write_text(mixture_yaml(weights))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"))
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--start", type=int, default=0)
    args = parser.parse_args(argv)
    for kind, path in write_world_mllm_data(args.out_dir, args.split, args.num, args.start).items():
        print(kind, path)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
