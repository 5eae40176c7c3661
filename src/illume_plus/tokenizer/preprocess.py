"""Image sizes DualViTok accepts, and how arbitrary images are brought to them."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

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


def semantic_patches(images: torch.Tensor, size: tuple[int, int], mean, std, patch_size: int = 14,
                     temporal_patch_size: int = 2, merge_size: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, 3, H, W) in [-1, 1] -> Qwen2-VL vision input: patch rows (B*gh*gw, C*T*p*p) and
    grid_thw (B, 3) = [1, gh, gw] per image, with (gh, gw) = size / patch_size.

    [0, 1] scaling, bicubic antialiased resize to `size` in fp32, clamp, CLIP normalisation, the
    still image repeated to `temporal_patch_size` frames. Rows are ordered so that every
    merge_size x merge_size window is contiguous (what the PatchMerger expects); columns are
    (channel, frame, patch row, patch column).
    """
    b, c, h, w = images.shape
    x = (images.float() + 1) / 2
    if (h, w) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bicubic", align_corners=False, antialias=True)
    x = x.clamp(0, 1)
    x = (x - x.new_tensor(mean).view(1, -1, 1, 1)) / x.new_tensor(std).view(1, -1, 1, 1)
    gh, gw = size[0] // patch_size, size[1] // patch_size
    m, p, t = merge_size, patch_size, temporal_patch_size
    x = x[:, None].expand(b, t, c, *size)  # (B, T, C, H', W')
    x = x.reshape(b, t, c, gh // m, m, p, gw // m, m, p)
    # -> (B, gh/m, gw/m, m, m, C, T, p, p)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    patches = x.reshape(b * gh * gw, c * t * p * p)
    grid_thw = torch.tensor([[1, gh, gw]] * b, dtype=torch.long, device=images.device)
    return patches, grid_thw


def pil_to_tensor(image) -> torch.Tensor:
    """An RGB PIL image -> (3, H, W) float tensor in [-1, 1] (x / 127.5 - 1, as theirs)."""
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(image.height, image.width, 3)
    return pixels.permute(2, 0, 1).float().div(127.5).sub(1.0)


def image_to_tensor(image, factor: int = 16, min_pixels: int = 32 * 32, max_pixels: int = 512 * 512,
                    background: tuple[int, int, int] = (255, 255, 255)) -> torch.Tensor:
    """An image (PIL image of any mode, path or bytes) -> (3, H, W) float tensor in [-1, 1],
    smart-resized so that H, W are multiples of `factor` and min_pixels <= H*W <= max_pixels.

    The one preprocessing path of DualViTok and the MLLM (theirs: transformers' image
    processor): read by `illume_plus.utils.images.load_image` (EXIF orientation applied, 16-bit
    images scaled, not clipped, transparency composited over `background`), then PIL bicubic
    resampling on the uint8 image.
    """
    from PIL import Image

    from ..utils.images import load_image

    image = load_image(image, background=background)
    height, width = smart_resize(image.height, image.width, factor, min_pixels, max_pixels)
    if (height, width) != (image.height, image.width):
        image = image.resize((width, height), resample=Image.Resampling.BICUBIC)
    return pil_to_tensor(image)
