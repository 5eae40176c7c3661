"""Image sizes DualViTok accepts, and how arbitrary images are brought to them."""

from __future__ import annotations

import math

MAX_ASPECT_RATIO = 200  # beyond this an image cannot hold one token row and one column at once


def smart_resize(height: int, width: int, factor: int = 16, min_pixels: int = 32 * 32,
                 max_pixels: int = 512 * 512) -> tuple[int, int]:
    """(H, W) that are multiples of `factor`, keep the aspect ratio as well as rounding allows,
    and satisfy min_pixels <= H * W <= max_pixels (rescaling by area when needed)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio of {height}x{width} exceeds {MAX_ASPECT_RATIO}:1")
    if min_pixels > max_pixels:
        raise ValueError(f"min_pixels {min_pixels} > max_pixels {max_pixels}")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        scale = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / scale / factor) * factor)
        w = max(factor, math.floor(width / scale / factor) * factor)
    elif h * w < min_pixels:
        scale = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * scale / factor) * factor
        w = math.ceil(width * scale / factor) * factor
    return h, w


def semantic_input_size(height: int, width: int, mapping: dict | None = None, patch: int = 28) -> tuple[int, int]:
    """(H', W') the semantic ViT sees for a (H, W) image: the fixed mapping when (H, W) is one of
    its keys, else each side floored to a multiple of `patch` (at least one patch)."""
    if mapping and (height, width) in mapping:
        return tuple(mapping[(height, width)])
    return max(patch, height // patch * patch), max(patch, width // patch * patch)
