"""The package's one way to open an image: `load_image(path | bytes | file | PIL image) -> RGB`.

Every entry point (DualViTok.preprocess, the datasets, the MLLM processor, the CLI, the web demo)
reads images through here, so they all treat odd files the same way:
- unreadable, truncated or corrupt files raise `ImageLoadError` (a ValueError) with one line
  naming the file and the reason; a missing path raises FileNotFoundError;
- images with more than `max_image_pixels` pixels (decompression bombs) are refused from the
  header, before anything is decoded;
- the EXIF orientation is applied (camera photos come out upright);
- 16-bit and 32-bit greyscale ("I;16", "I") and float ("F") images are scaled to 8 bits, not
  clipped (PIL's own convert("RGB") saturates them);
- transparency (RGBA, LA, PA, palette or greyscale with a transparent colour) is composited over
  WHITE, so transparent areas do not take the colour their hidden RGB values hold;
- CMYK, YCbCr, 1-bit and the rest go through PIL's conversion.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# What PIL raises on truncated, corrupt or hostile files.
READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError, Image.UnidentifiedImageError)
WHITE = (255, 255, 255)


class ImageLoadError(ValueError):
    """An image that cannot be read; the message is one line naming the file and the reason."""


def load_image(source, *, max_side: int | None = None, max_image_pixels: int | None = None,
               background: tuple[int, int, int] = WHITE) -> Image.Image:
    """Open `source` (a path, bytes, a binary file object or a PIL image), decode it fully and
    return an upright 8-bit RGB PIL image.

    max_side: when given, downscale (aspect ratio kept) so that neither side exceeds it; JPEGs
        are then decoded at reduced size directly, so a huge photo never needs its full memory.
    max_image_pixels: refuse images with more pixels than this (default: PIL's
        `Image.MAX_IMAGE_PIXELS`, about 89 million), from the header alone.
    """
    if isinstance(source, Image.Image):
        try:
            return _finish(source, max_side, background)
        except READ_ERRORS as e:  # a lazily opened image decodes here
            raise ImageLoadError(f"cannot read image {_describe(source)}: {_one_line(e)}") from None
    name, opened = _open(source)
    limit = Image.MAX_IMAGE_PIXELS if max_image_pixels is None else max_image_pixels
    try:
        with opened as image:
            width, height = image.size
            if width <= 0 or height <= 0:
                raise ImageLoadError(f"cannot read image {name}: its size is {width}x{height}")
            if limit is not None and width * height > limit:
                raise ImageLoadError(f"image {name} is {width}x{height} = {width * height:,} pixels, above the "
                                     f"limit of {limit:,} (a decompression bomb?)")
            if max_side is not None and image.format == "JPEG":
                image.draft("RGB", _fit((width, height), max_side))  # decode at 1/2, 1/4 or 1/8 scale
            image.load()  # decode now, so truncation errors surface here
            return _finish(image, max_side, background)
    except ImageLoadError:
        raise
    except READ_ERRORS as e:
        raise ImageLoadError(f"cannot read image {name}: {_one_line(e)}") from None


def to_rgb(image: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """A PIL image of any mode as 8-bit RGB (see the module docstring for the rules)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and values.max(initial=0) > 255):
            values = values / 257.0  # 16-bit range 0..65535 -> 0..255
        elif mode == "F" and values.max(initial=0) <= 1.0:
            values = values * 255.0  # float images are usually in [0, 1]
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([gray] * 3, axis=-1), "RGB")
    if mode in ("P", "LA", "La", "PA", "RGBa") or (mode in ("L", "RGB", "1") and "transparency" in image.info):
        image = image.convert("RGBA")  # a palette or a transparent colour may carry transparency
    if image.mode == "RGBA":
        canvas = Image.new("RGBA", image.size, (*background, 255))
        return Image.alpha_composite(canvas, image).convert("RGB")
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV...


# ----------------------------------------------------------------------------- helpers
def _open(source) -> tuple[str, Image.Image]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        name, stream = str(path), path
    elif isinstance(source, (bytes, bytearray, memoryview)):
        name, stream = f"({len(source):,} bytes)", io.BytesIO(bytes(source))
    elif hasattr(source, "read"):
        name, stream = str(getattr(source, "name", "(file object)")), source
    else:
        raise TypeError(f"an image must be a path, bytes, a file object or a PIL image, got {type(source).__name__}")
    try:
        return name, Image.open(stream)
    except READ_ERRORS as e:
        raise ImageLoadError(f"cannot read image {name}: {_one_line(e)}") from None


def _finish(image: Image.Image, max_side: int | None, background) -> Image.Image:
    try:
        image = ImageOps.exif_transpose(image)  # a copy, upright, orientation tag removed
    except READ_ERRORS:
        pass  # a damaged EXIF block: keep the pixels as stored
    rgb = to_rgb(image, background)
    if max_side is not None and max(rgb.size) > max_side:
        rgb = rgb.resize(_fit(rgb.size, max_side), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return rgb


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    width, height = size
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _describe(image: Image.Image) -> str:
    return str(getattr(image, "filename", "") or "(PIL image)")


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:300]
