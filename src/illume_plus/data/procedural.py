"""Procedural images: a deterministic, download-free image source for tests and small runs.

Each image is a function of (seed, index) only: a background (linear gradient, stripes,
checkerboard or smooth noise), a handful of filled shapes, and sometimes a line of text in
PIL's default font. That gives edges, flat regions, textures and glyphs - enough structure
for a tokenizer to have something to learn - at any size.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..utils.io import atomic_path

BACKGROUNDS = ("gradient", "stripes", "checker", "noise")
SHAPES = ("ellipse", "rectangle", "polygon", "line")


def _color(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, size=3))


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    kind = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    a, b = np.array(_color(rng), np.float32), np.array(_color(rng), np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        t = xx * np.cos(angle) + yy * np.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    elif kind == "stripes":
        period = rng.uniform(4, max(6, min(height, width) / 3))
        angle = rng.uniform(0, np.pi)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    elif kind == "checker":
        cell = int(rng.integers(4, max(5, min(height, width) // 4)))
        t = ((yy // cell + xx // cell) % 2).astype(np.float32)
    else:  # smooth noise: a coarse random grid bilinearly upsampled
        coarse = rng.random((int(rng.integers(2, 9)), int(rng.integers(2, 9))), dtype=np.float32)
        t = np.asarray(Image.fromarray(coarse, mode="F").resize((width, height), Image.BILINEAR))
    return a * (1 - t[..., None]) + b * t[..., None]


def render_procedural_image(seed: int, height: int, width: int) -> Image.Image:
    """An RGB image of size (height, width) determined entirely by `seed`."""
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    rng = np.random.default_rng(seed)
    image = Image.fromarray(np.clip(_background(rng, height, width), 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 7))):
        kind = SHAPES[rng.integers(len(SHAPES))]
        x0, x1 = sorted(rng.uniform(-0.1, 1.1, size=2) * width)
        y0, y1 = sorted(rng.uniform(-0.1, 1.1, size=2) * height)
        box = [x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)]
        if kind == "ellipse":
            draw.ellipse(box, fill=_color(rng))
        elif kind == "rectangle":
            draw.rectangle(box, fill=_color(rng))
        elif kind == "polygon":
            n = int(rng.integers(3, 7))
            points = list(zip(rng.uniform(0, width, n), rng.uniform(0, height, n)))
            draw.polygon(points, fill=_color(rng))
        else:
            draw.line(box, fill=_color(rng), width=int(rng.integers(1, max(2, min(height, width) // 16))))
    if rng.random() < 0.5:
        letters = string.ascii_letters + string.digits
        text = "".join(letters[i] for i in rng.integers(len(letters), size=int(rng.integers(3, 12))))
        font = ImageFont.load_default(size=max(8, int(min(height, width) * rng.uniform(0.08, 0.2))))
        draw.text((rng.uniform(0, 0.6) * width, rng.uniform(0, 0.8) * height), text, fill=_color(rng), font=font)
    return image


def procedural_size(seed: int, sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """The (H, W) picked for image `seed` from the allowed `sizes` (deterministic)."""
    return tuple(sizes[int(np.random.default_rng([seed, 1]).integers(len(sizes)))])


def write_procedural_images(out_dir, num_images: int, seed: int = 0,
                            sizes: list[tuple[int, int]] = ((256, 256),)) -> list[Path]:
    """Write `num_images` PNGs (image i from seed `seed + i`) into `out_dir`; returns their paths."""
    out_dir = Path(out_dir)
    paths = []
    for i in range(num_images):
        h, w = procedural_size(seed + i, list(sizes))
        path = out_dir / f"procedural_{seed + i:08d}.png"
        with atomic_path(path) as tmp:
            render_procedural_image(seed + i, h, w).save(tmp, format="PNG")
        paths.append(path)
    return paths
