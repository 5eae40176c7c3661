"""Images in and out of the MLLM, resampled as the authors' code does it (PIL, on uint8).

- Understanding: smart resize (sides multiples of 16, area within bounds) with PIL bicubic,
  DualViTok's own preprocessing path (`tokenizer.preprocess.image_to_tensor`).
- Generation sizes: the anchor is the generation size with the nearest aspect ratio w/h,
  ties broken by the squared distance to the source's size (their `AspectRatioCrop`).
- Editing sources ("pad", their inference): LANCZOS-resize to fit inside the anchor, pad
  the rest with white; after decoding, crop the padding off and LANCZOS-resize back to the
  source's size (their `resize_with_padding` / `unpad_and_resize_back`). "crop" (their
  training data): LANCZOS-resize to cover the anchor, centre crop.

Tensor inputs ((3, H, W) in [-1, 1]) that need resampling go through the same PIL path
(as uint8), so every image is resampled by one filter whatever its type.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..tokenizer.preprocess import image_to_tensor as pil_path_to_tensor
from ..tokenizer.preprocess import pil_to_tensor, smart_resize

FITS = ("pad", "crop")

__all__ = ["ResizeInfo", "FITS", "image_to_tensor", "tensor_to_pil", "as_rgb_image", "nearest_anchor",
           "understanding_tensor", "fit_to_anchor", "restore_source_size"]


@dataclass
class ResizeInfo:
    """How a source image was brought to its generation size, so that the result can be brought
    back. `content_box` = (top, left, height, width) of the picture inside the padded image
    ("pad"), or of the kept window of the resized image ("crop"), in pixels of `size`."""

    original_size: tuple[int, int]  # (H, W)
    size: tuple[int, int]
    fit: str
    content_box: tuple[float, float, float, float]
    scale: float  # resized pixels per original pixel


def image_to_tensor(image) -> torch.Tensor:
    """PIL image (any mode; read by `utils.images.load_image`), path, bytes or (3, H, W) tensor in
    [-1, 1] -> float32 (3, H, W) in [-1, 1]. Tensors must be finite and non-empty."""
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
            raise ValueError(f"image tensors must be float (3, H, W) in [-1, 1], "
                             f"got {image.dtype} {tuple(image.shape)}")
        if image.shape[1] < 1 or image.shape[2] < 1:
            raise ValueError(f"image tensors must have positive height and width, got {tuple(image.shape)}")
        if not torch.isfinite(image).all():  # NaN passes any range comparison: check it first
            raise ValueError("image tensor holds NaN or infinite values")
        if image.min() < -1.001 or image.max() > 1.001:
            raise ValueError("image tensor values must lie in [-1, 1] (scale [0, 1] images with x * 2 - 1)")
        return image.float()
    return pil_to_tensor(as_rgb_image(image))


def tensor_to_pil(image: torch.Tensor):
    from PIL import Image

    array = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).cpu().numpy())


def as_rgb_image(image):
    """An upright RGB PIL image of a PIL image (any mode), a path, bytes or a (3, H, W) tensor
    in [-1, 1] (images are read by `utils.images.load_image`)."""
    from PIL import Image

    from ..utils.images import load_image

    if isinstance(image, torch.Tensor):
        return tensor_to_pil(image_to_tensor(image))
    if not isinstance(image, (Image.Image, str, os.PathLike, bytes)):
        raise ValueError(f"an image must be a PIL image, a path, bytes or a (3, H, W) tensor, "
                         f"got {type(image).__name__}")
    return load_image(image)


def nearest_anchor(height: int, width: int, anchors) -> tuple[int, int]:
    """The anchor (H, W) whose w/h is nearest to width/height; among equally near ones, the
    one nearest to (height, width) in squared distance (theirs; the first of the list on a
    further tie)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    ratio = width / height
    gaps = [abs(w / h - ratio) for h, w in anchors]
    nearest = [a for a, gap in zip(anchors, gaps) if gap == min(gaps)]
    return tuple(min(nearest, key=lambda a: (height - a[0]) ** 2 + (width - a[1]) ** 2))


def understanding_tensor(image, factor: int, min_pixels: int, max_pixels: int) -> torch.Tensor:
    """(3, H, W) in [-1, 1] with H, W multiples of `factor` and the area within bounds. A
    tensor already of such a size is used as it is (no requantisation)."""
    if isinstance(image, torch.Tensor):
        x = image_to_tensor(image)
        if tuple(x.shape[-2:]) == smart_resize(*x.shape[-2:], factor, min_pixels, max_pixels):
            return x
        image = tensor_to_pil(x)
    return pil_path_to_tensor(as_rgb_image(image), factor, min_pixels, max_pixels)


def fit_to_anchor(image, size: tuple[int, int], fit: str = "pad",
                  pad_value: float = 1.0) -> tuple[torch.Tensor, ResizeInfo]:
    """Bring an image to `size` (H, W) by "pad" (fit inside, centre, fill with `pad_value` in
    [-1, 1]; 1 = white) or "crop" (cover, centre crop). Returns (3, H, W) in [-1, 1] and how."""
    from PIL import Image

    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    rgb = as_rgb_image(image)
    w, h = rgb.size
    big_h, big_w = size
    if fit == "pad":
        scale = min(big_w / w, big_h / h)
        new_w, new_h = max(1, int(w * scale)), max(1, int(h * scale))
        left, top = (big_w - new_w) // 2, (big_h - new_h) // 2
        fill = round((pad_value + 1) * 127.5)
        out = Image.new("RGB", (big_w, big_h), (fill, fill, fill))
        out.paste(rgb.resize((new_w, new_h), Image.Resampling.LANCZOS), (left, top))
        box = (float(top), float(left), float(new_h), float(new_w))  # the picture inside the padded image
    else:
        if h / big_h > w / big_w:
            new_w, new_h = big_w, int(big_w / w * h)
        else:
            new_w, new_h = int(big_h / h * w), big_h
        scale = new_w / w
        left, top = (new_w - big_w) // 2, (new_h - big_h) // 2
        out = rgb.resize((new_w, new_h), Image.Resampling.LANCZOS).crop((left, top, left + big_w, top + big_h))
        box = (float(top), float(left), float(big_h), float(big_w))  # kept window of the resized image
    return pil_to_tensor(out), ResizeInfo((h, w), (big_h, big_w), fit, box, scale)


def restore_source_size(image, info: ResizeInfo):
    """A generated image (PIL, or (3, H, W) in [-1, 1]) of an edit whose source was brought to
    its size by `info` -> PIL. "pad": the padding is cropped off (the box recomputed from the
    output's own size, so the diffusion decoder's 2x works too) and the picture resized back to
    the source's size; "crop": resized to the source's pixel scale (the cropped border is gone)."""
    from PIL import Image

    out = as_rgb_image(image)
    out_w, out_h = out.size
    src_h, src_w = info.original_size
    if info.fit == "pad":
        ratio = min(out_w / src_w, out_h / src_h)
        keep_w, keep_h = max(1, int(src_w * ratio)), max(1, int(src_h * ratio))
        left, top = (out_w - keep_w) // 2, (out_h - keep_h) // 2
        return out.crop((left, top, left + keep_w, top + keep_h)).resize((src_w, src_h), Image.Resampling.LANCZOS)
    k = out_h / info.size[0]  # output pixels per generation-size pixel
    size = (max(1, round(out_w / (k * info.scale))), max(1, round(out_h / (k * info.scale))))
    return out.resize(size, Image.Resampling.LANCZOS)
