"""Write docs/images/world_results.png: what the model does on held-out test scenes.

    python benchmarks/world_results.py [--model DIR] [--out PNG] [--count 6]

Row 1: the prompt's exact render (what the caption describes) and the model's image for it.
Row 2: a source scene, the exact target of the instruction, and the model's edit.
A tick or cross says whether the detector reads the model's image back as the asked scene.
"""

import argparse
import textwrap

import torch
from PIL import Image, ImageDraw, ImageFont

from illume_plus.pipeline import Pipeline
from illume_plus.world import examples
from illume_plus.world.detector import detect_objects

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--model", default=None, help="pipeline folder (default: the shipped model)")
parser.add_argument("--out", default="docs/images/world_results.png")
parser.add_argument("--count", type=int, default=6)
parser.add_argument("--start", type=int, default=0, help="first test example")
args = parser.parse_args()
torch.set_num_threads(2)

pipe = Pipeline.from_pretrained(args.model)
rows = examples("test", args.count, start=args.start)
generated = pipe.generate([e.caption for e in rows], seed=0)
edited = pipe.edit([e.image() for e in rows], [e.edit.instruction for e in rows], seed=0)

side, text_h, gap = 128, 70, 8
block_w = 3 * side + gap
sheet = Image.new("RGB", (block_w * args.count, 2 * (side + text_h)), "white")
draw = ImageDraw.Draw(sheet)
font = ImageFont.load_default(size=10)
for i, (e, g, ed) in enumerate(zip(rows, generated, edited)):
    x = i * block_w
    gen_ok = sorted(detect_objects(g.image)) == sorted(e.scene.objects)
    edit_ok = sorted(detect_objects(ed.image)) == sorted(e.edit.target.objects)
    sheet.paste(e.image(), (x, 0))
    sheet.paste(g.image.convert("RGB"), (x + side, 0))
    draw.multiline_text((x + 2, side + 2), "\n".join(
        textwrap.wrap(f"prompt: {e.caption}", 62)[:4] + [f"render | model {'OK' if gen_ok else 'WRONG'}"]),
        fill="black", font=font)
    y = side + text_h
    sheet.paste(e.image(), (x, y))
    sheet.paste(e.edited_image(), (x + side, y))
    sheet.paste(ed.image.convert("RGB"), (x + 2 * side, y))
    draw.multiline_text((x + 2, y + side + 2), "\n".join(
        textwrap.wrap(f"edit: {e.edit.instruction}", 62)[:3]
        + [f"source | target | model {'OK' if edit_ok else 'WRONG'}"]), fill="black", font=font)
sheet.save(args.out)
print(args.out)
