"""Drawing a scene: flat shapes on a light background, anti-aliased by 4x supersampling.

The default size is 128x128 (see docs/world.md for why): the tokenizer then sees a 4x4
semantic grid (SPEC: H' = max(28, H//28*28) = 112) and an 8x8 pixel grid, so one picture costs
the MLLM about 100 tokens.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from .scene import COLOURS, GRID, Background, Scene, WorldObject

IMAGE_SIZE = 128
SUPERSAMPLE = 4
# Shape radius as a fraction of the cell side; the two sizes differ by ~1.7x in extent.
RADIUS = {"small": 0.22, "large": 0.38}
TEXTURE_AMPLITUDE = 6.0  # grey levels: the "light texture" stays far below object saturation


def cell_box(cell: int, size: int = IMAGE_SIZE) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) pixel bounds of a grid cell (bottom/right exclusive)."""
    row, col = divmod(cell, GRID)
    edges = [round(i * size / GRID) for i in range(GRID + 1)]
    return edges[row], edges[col], edges[row + 1], edges[col + 1]


def shape_polygon(kind: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    """Outline of `kind` centred at (cx, cy) with radius r (None for the circle, drawn as an ellipse)."""
    if kind == "circle":
        return None
    if kind == "square":
        h = 0.85 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if kind == "triangle":  # equilateral, pointing up, centred on its bounding box
        half_w, half_h = r, r * math.sqrt(3) / 2
        return [(cx, cy - half_h), (cx + half_w, cy + half_h), (cx - half_w, cy + half_h)]
    if kind == "star":  # five points, inner radius 0.45 of the outer
        points = []
        for i in range(10):
            radius = r if i % 2 == 0 else 0.45 * r
            angle = -math.pi / 2 + i * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle) + 0.1 * r))
        return points
    if kind == "cross":  # a plus sign, arms a third of the extent wide
        a, w = 0.9 * r, 0.3 * r
        return [(cx - w, cy - a), (cx + w, cy - a), (cx + w, cy - w), (cx + a, cy - w), (cx + a, cy + w),
                (cx + w, cy + w), (cx + w, cy + a), (cx - w, cy + a), (cx - w, cy + w), (cx - a, cy + w),
                (cx - a, cy - w), (cx - w, cy - w)]
    raise ValueError(f"unknown shape kind {kind!r}")


def background_array(background: Background, size: int) -> np.ndarray:
    """(size, size, 3) float grey background; "texture" adds smooth noise of a few grey levels."""
    base = np.full((size, size), float(background.tone), np.float32)
    if background.style == "texture":
        rng = np.random.default_rng(background.texture_seed)
        coarse = rng.uniform(-1, 1, size=(6, 6)).astype(np.float32)
        smooth = np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.BICUBIC))
        base = base + TEXTURE_AMPLITUDE * smooth
    return np.repeat(base[..., None], 3, axis=-1)


def _draw_object(draw: ImageDraw.ImageDraw, obj: WorldObject, size: int, fill) -> None:
    top, left, bottom, right = cell_box(obj.cell, size)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    r = RADIUS[obj.size] * size / GRID
    polygon = shape_polygon(obj.kind, cx, cy, r)
    if polygon is None:
        draw.ellipse([cx - 0.95 * r, cy - 0.95 * r, cx + 0.95 * r, cy + 0.95 * r], fill=fill)
    else:
        draw.polygon(polygon, fill=fill)


def render_scene(scene: Scene, size: int = IMAGE_SIZE) -> Image.Image:
    """The scene as an RGB image of size x size (deterministic)."""
    if size < 3 * GRID:
        raise ValueError(f"image size {size} is too small for a {GRID}x{GRID} grid")
    big = size * SUPERSAMPLE
    # Shapes are drawn on a mask canvas at 4x and box-filtered down, so edges blend with the
    # background exactly as a 4x4-sample anti-aliasing would.
    layer = Image.new("RGB", (big, big), (0, 0, 0))
    alpha = Image.new("L", (big, big), 0)
    draw, draw_alpha = ImageDraw.Draw(layer), ImageDraw.Draw(alpha)
    for obj in scene.objects:
        _draw_object(draw, obj, big, COLOURS[obj.colour])
        _draw_object(draw_alpha, obj, big, 255)
    layer_small = np.asarray(layer.resize((size, size), Image.BOX), np.float32)
    alpha_small = np.asarray(alpha.resize((size, size), Image.BOX), np.float32)[..., None] / 255.0
    # The colour layer was box-filtered against black: undo that to get the pure shape colour.
    colour = np.where(alpha_small > 0, layer_small / np.maximum(alpha_small, 1e-6), 0.0)
    out = background_array(scene.background, size) * (1 - alpha_small) + colour * alpha_small
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")


def changed_cells_mask(cells, size: int = IMAGE_SIZE) -> np.ndarray:
    """Boolean (size, size) mask of the given grid cells (the region an edit may touch)."""
    mask = np.zeros((size, size), bool)
    for cell in cells:
        top, left, bottom, right = cell_box(cell, size)
        mask[top:bottom, left:right] = True
    return mask


__all__ = ["IMAGE_SIZE", "render_scene", "cell_box", "shape_polygon", "background_array", "changed_cells_mask"]
