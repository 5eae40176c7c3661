"""Write docs/world_samples.png: test-split scenes, their edits (source -> target) and texts.

    PYTHONPATH=src python benchmarks/world_samples.py [OUT]
"""

import sys
import textwrap

from PIL import Image, ImageDraw, ImageFont

from illume_plus.world import examples

out = sys.argv[1] if len(sys.argv) > 1 else "docs/world_samples.png"
rows = examples("test", 4)
cell_w, text_h = 128, 92
sheet = Image.new("RGB", (cell_w * 2 * len(rows), cell_w + text_h), "white")
draw = ImageDraw.Draw(sheet)
font = ImageFont.load_default(size=10)
for i, e in enumerate(rows):
    x = i * 2 * cell_w
    sheet.paste(e.image(), (x, 0))
    sheet.paste(e.edited_image(), (x + cell_w, 0))
    lines = textwrap.wrap(e.caption, 44)[:3] + [f"Q: {e.qa.question} A: {e.qa.answer}"[:46],
                                                   f"edit: {e.edit.instruction}"[:46]]
    draw.multiline_text((x + 4, cell_w + 4), "\n".join(lines), fill="black", font=font)
sheet.save(out)
print(out)
