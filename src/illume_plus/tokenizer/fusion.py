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
    """Robust-decoding noise (SPEC §2), as the authors' `apply_noise`: each sample is perturbed
    with probability `batch_rate` (alpha); in a perturbed sample each position is replaced
    independently with probability `token_rate` (beta, a Bernoulli keep of 1 - beta).

    "random": a replaced position takes the code at the same (h, w) of the PREVIOUS sample of the
    batch (sample 0 takes the last one's; a batch of one takes its own), detached; "zero": zeros.
    pixel_codes: (B, D, h, w). Returns a new tensor; gradients flow to the kept positions only.
    """
    if noise_type not in ("random", "zero"):
        raise ValueError(f"noise_type must be 'random' or 'zero', got {noise_type!r}")
    if batch_rate <= 0 or token_rate <= 0:
        return pixel_codes
    b, _, h, w = pixel_codes.shape
    device = pixel_codes.device
    perturbed = torch.rand(b, 1, 1, 1, device=device, generator=generator) < batch_rate
    replace = perturbed & (torch.rand(b, 1, h, w, device=device, generator=generator) < token_rate)
    if noise_type == "zero":
        donor = torch.zeros_like(pixel_codes)
    else:
        donor = torch.roll(pixel_codes, shifts=1, dims=0).detach()  # donor[i] = codes[i - 1]
    return torch.where(replace, donor, pixel_codes)
