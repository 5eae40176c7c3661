"""Reading a picture back into objects, with no neural network: the judge of every world metric.

1. Object pixels are the saturated ones (the background is grey, every object colour vivid).
2. Connected components of those pixels are objects (objects never share a cell, so never touch);
   specks below `min_area` pixels are noise.
3. Colour: the palette colour nearest in hue to the component's median hue.
4. Kind, from two shape descriptors: solidity (area / convex-hull area) separates the concave
   star and cross from the convex shapes, extent (area / bounding-box area) then separates
   square (~1), circle (~0.77) and triangle (~0.53); both together tell star from cross.
5. Size: the bounding box's longer side against the midpoint of the two rendered sizes.
6. Cell: the grid cell holding the bounding-box centre.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from .render import RADIUS
from .scene import COLOURS, GRID, WorldObject

_PALETTE_HUES = {name: colorsys.rgb_to_hsv(*(c / 255 for c in rgb))[0] for name, rgb in COLOURS.items()}


@dataclass(frozen=True)
class DetectorSettings:
    saturation: float = 0.35  # HSV saturation above which a pixel belongs to an object
    min_value: float = 0.25  # ... and HSV value above this (very dark pixels are not palette colours)
    min_area_fraction: float = 0.0015  # components smaller than this fraction of the image are specks
    concave_solidity: float = 0.82  # below: star or cross
    # Concave shapes: star when solidity/star_solidity + extent/star_extent < 2 (stars are both
    # less solid, ~0.6 vs ~0.72, and emptier in their box, ~0.43 vs ~0.55, than crosses).
    star_solidity: float = 0.665
    star_extent: float = 0.505
    square_extent: float = 0.9
    triangle_extent: float = 0.66


@dataclass(frozen=True)
class Detection:
    object: WorldObject
    area: int
    solidity: float
    extent: float


def _hsv(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rgb = image.astype(np.float32) / 255.0
    mx, mn = rgb.max(-1), rgb.min(-1)
    delta = mx - mn
    sat = np.where(mx > 0, delta / np.maximum(mx, 1e-6), 0.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    safe = np.maximum(delta, 1e-6)
    hue = np.where(mx == r, ((g - b) / safe) % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6.0
    return hue, sat, mx


def _nearest_colour(hues: np.ndarray) -> str:
    # Median on the circle: rotate so the mean direction sits at 0.5, take the median, rotate back.
    angles = hues * 2 * np.pi
    mean = np.arctan2(np.sin(angles).mean(), np.cos(angles).mean()) / (2 * np.pi)
    median = (np.median((hues - mean + 0.5) % 1.0) + mean - 0.5) % 1.0
    return min(_PALETTE_HUES, key=lambda name: min(abs(median - _PALETTE_HUES[name]),
                                                   1 - abs(median - _PALETTE_HUES[name])))


def _solidity(ys: np.ndarray, xs: np.ndarray, area: int) -> float:
    # Hull of the pixel squares' corners, so a filled convex shape scores ~1 at any size.
    corners = np.concatenate([np.stack([ys + dy, xs + dx], 1) for dy in (0, 1) for dx in (0, 1)])
    try:
        return float(area / ConvexHull(corners).volume)
    except QhullError:  # degenerate (a line of pixels)
        return 1.0


def _kind(solidity: float, extent: float, s: DetectorSettings) -> str:
    if solidity < s.concave_solidity:
        return "star" if solidity / s.star_solidity + extent / s.star_extent < 2 else "cross"
    if extent >= s.square_extent:
        return "square"
    return "circle" if extent >= s.triangle_extent else "triangle"


def detect(image, settings: DetectorSettings = DetectorSettings()) -> list[Detection]:
    """Objects in an RGB image (PIL or uint8 array (H, W, 3)), sorted by cell."""
    array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"detect expects an RGB image (H, W, 3), got shape {array.shape}")
    height, width = array.shape[:2]
    hue, sat, value = _hsv(array)
    mask = (sat > settings.saturation) & (value > settings.min_value)
    labels, count = ndimage.label(mask)
    size_threshold = (RADIUS["small"] + RADIUS["large"]) * min(height, width) / GRID  # midpoint of the diameters
    min_area = settings.min_area_fraction * height * width
    found = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        region = labels[box] == index
        area = int(region.sum())
        if area < min_area:
            continue
        ys, xs = np.nonzero(region)
        box_h, box_w = box[0].stop - box[0].start, box[1].stop - box[1].start
        extent = area / float(box_h * box_w)
        solidity = _solidity(ys, xs, area)
        cy, cx = (box[0].start + box[0].stop) / 2, (box[1].start + box[1].stop) / 2
        row, col = min(int(cy * GRID / height), GRID - 1), min(int(cx * GRID / width), GRID - 1)
        obj = WorldObject(cell=row * GRID + col, kind=_kind(solidity, extent, settings),
                          colour=_nearest_colour(hue[box][region]),
                          size="large" if max(box_h, box_w) > size_threshold else "small")
        found.append(Detection(obj, area, solidity, extent))
    return sorted(found, key=lambda d: (d.object.cell, -d.area))


def detect_objects(image, settings: DetectorSettings = DetectorSettings()) -> list[WorldObject]:
    return [d.object for d in detect(image, settings)]


__all__ = ["DetectorSettings", "Detection", "detect", "detect_objects"]
