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


def inject_code_noise(pixel_codes: torch.Tensor, batch_rate: float, token_rate: float, noise_type: str = "random",
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Robust-decoding noise (SPEC §2): each sample is perturbed with probability `batch_rate`
    (alpha); in a perturbed sample, round(token_rate * h * w) positions (beta) are replaced.

    "random": a replaced position takes the code at the same (h, w) of another sample of the
    batch (a batch of one has no other sample, so nothing is replaced); "zero": it takes zeros.
    pixel_codes: (B, D, h, w). Returns a new tensor; gradients flow to the kept positions.
    """
    if noise_type not in ("random", "zero"):
        raise ValueError(f"noise_type must be 'random' or 'zero', got {noise_type!r}")
    b, _, h, w = pixel_codes.shape
    n_replaced = round(token_rate * h * w)
    if batch_rate <= 0 or n_replaced == 0 or (noise_type == "random" and b < 2):
        return pixel_codes
    device = pixel_codes.device
    perturbed = torch.rand(b, device=device, generator=generator) < batch_rate
    # n_replaced distinct positions per sample: the smallest of uniform scores.
    scores = torch.rand(b, h * w, device=device, generator=generator)
    positions = scores.argsort(dim=1)[:, :n_replaced]
    replace = torch.zeros(b, h * w, dtype=torch.bool, device=device).scatter_(1, positions, True)
    replace = (replace & perturbed[:, None]).view(b, 1, h, w)
    if noise_type == "zero":
        donor = torch.zeros_like(pixel_codes)
    else:  # another sample: shift each index by 1..b-1 (mod b), so never itself
        offset = torch.randint(1, b, (b,), device=device, generator=generator)
        donor = pixel_codes[(torch.arange(b, device=device) + offset) % b]
    return torch.where(replace, donor, pixel_codes)
