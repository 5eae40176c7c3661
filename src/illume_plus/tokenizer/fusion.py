"""Fusing the two code maps into the 64-channel map that conditions both decoders."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fuse_code_maps(semantic: torch.Tensor, pixel: torch.Tensor) -> torch.Tensor:
    """Bicubic-upsample the semantic map (B, Ds, hs, ws) to the pixel grid and concatenate
    [semantic, pixel] -> (B, Ds + Dp, hp, wp). The semantic grid (28x) and the pixel grid (16x)
    are in no fixed ratio, so this is an interpolation, not a repeat."""
    if semantic.shape[-2:] != pixel.shape[-2:]:
        semantic = F.interpolate(semantic, size=pixel.shape[-2:], mode="bicubic", align_corners=False)
    return torch.cat([semantic, pixel], dim=1)
