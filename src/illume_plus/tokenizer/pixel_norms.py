"""The pixel CNNs' norms: GroupNorm (encoder) and SpatialNorm, a GroupNorm modulated by the
code map (decoder), with an inference path for channels-last maps that is both faster and
closer to the authors' (NCHW) numbers than PyTorch's channels-last kernel.

Inference on a channels-last map (no autograd) writes a norm as one fused multiply-add
`x * gain + offset`, where gain and offset are per (sample, channel) for GroupNorm and, for
SpatialNorm, maps at the code map's resolution: the 1x1 convolutions and the products run
there, and the coarse maps reach x's resolution by broadcasting (a nearest upsampling by an
integer factor that is never materialised). Training, other devices than the CPU, NCHW inputs
and non-integer size ratios take the plain path: native GroupNorm (on an NCHW map), the
convolutions' output resized to x.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import DualViTokConfig

# The fast path walks a map in slices of about this many values: a slice stays in cache
# between the ops that read it (sum and sum of squares; multiply-add and SiLU), and the
# squares of a slice fit in memory the allocator reuses (a whole 512^2 map's square would be
# mapped afresh on every call and page-faulted in, which costs more than the arithmetic).
_SLICE = 1 << 18


def _fast_path(x: torch.Tensor) -> bool:
    """Inference on a channels-last CPU map (other devices keep their native kernels)."""
    return (not torch.is_grad_enabled() and x.device.type == "cpu" and x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last))


def _nearest_factor(coarse: torch.Tensor, x: torch.Tensor) -> tuple[int, int] | None:
    """The integer factors (fh, fw) by which x's map is a nearest upsampling of coarse's, or None."""
    (h, w), (big_h, big_w) = coarse.shape[-2:], x.shape[-2:]
    if big_h % h or big_w % w:
        return None
    return big_h // h, big_w // w


def fused_multiply_add(x: torch.Tensor, gain: torch.Tensor, offset: torch.Tensor, overwrite: bool = False,
                       silu: bool = False) -> torch.Tensor:
    """x * gain + offset (then SiLU if `silu`), with gain and offset (N, C, h, w) nearest-upsampled
    to x's size by broadcasting. x is overwritten when `overwrite` (the caller no longer needs it)."""
    fh, fw = _nearest_factor(gain, x)
    n, c, h, w = gain.shape
    # The output is allocated like x: left to itself, the 6-d op would give a batch of one odd
    # strides that make the next convolution fall back to NCHW.
    out = x if overwrite else torch.empty_like(x)
    step = max(1, _SLICE // (n * c * fh * x.shape[-1]))  # rows of the coarse map per slice
    exact = gain.dtype == x.dtype  # else a bf16 / fp16 map: the arithmetic in gain's fp32
    for start in range(0, h, step):
        stop, rows = min(h, start + step), slice(start * fh, min(h, start + step) * fh)
        shape = (n, c, stop - start, fh, w, fw)  # views, also of channels-last maps
        source, target = x[:, :, rows].view(shape), out[:, :, rows].view(shape)
        part = torch.addcmul(offset[:, :, start:stop, None, :, None], source if exact else source.to(gain.dtype),
                             gain[:, :, start:stop, None, :, None], out=target if exact else None)
        if silu:
            F.silu(part, inplace=True)
        if not exact:
            target.copy_(part)
    return out


class ChannelsLastGroupNorm(nn.GroupNorm):
    """nn.GroupNorm whose inference on a channels-last map keeps the NCHW kernel's accuracy.

    PyTorch's channels-last CPU kernel loses digits when a channel's mean is large against its
    spread (measured, 8 x 300^2 map, std 0.5: max error 1.5e-5 / 1.9e-3 / 0.64 at mean 0 / 4 /
    100, against 6e-7 / 1.1e-6 / 1.2e-5 for the NCHW kernel); on the parity fixture it moved the
    encoder's output 3e-5 from the authors' numbers, three times the tolerance. Here the
    per-channel sums of (x - shift) and its square, shift near the channel's mean, use
    torch.sum's cascade summation over cache-sized slices, the groups are combined in fp64,
    and the map is normalised by one fused multiply-add (4e-7 / 4e-7 / 1e-5 on the same maps)."""

    def coefficients(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gain, offset), each (N, C) in fp32 (fp64 for an fp64 map), with norm(x) = x * gain + offset."""
        n, c, h, w = x.shape
        g, per_group = self.num_groups, c // self.num_groups
        rows = x.permute(0, 2, 3, 1).reshape(n, h * w, c)  # a view: channels are the fastest axis
        parts = rows.split(max(1, _SLICE // (n * c)), dim=1)
        # Sums of x - shift and its square per channel, the shift being the channel's mean over
        # the first slice: near the true mean, so the variance is not a small difference of
        # large sums (which is what loses digits in fp32 when |mean| >> std).
        wide = torch.promote_types(x.dtype, torch.float32)  # bf16 / fp16 maps: statistics in fp32
        shift = parts[0].to(wide).mean(1, keepdim=True)
        total = squares = 0
        for part in parts:
            centred = part.to(wide) - shift
            total = total + centred.sum(1).double()
            squares = squares + (centred * centred).sum(1).double()
        # per channel: sums of (x - s); per group (fp64): mean, and the sum of (x - mean)^2
        # = sum (x - s)^2 - 2 (mean - s) sum (x - s) + count (mean - s)^2 over its channels
        shift = shift[:, 0].double()
        count = h * w
        mean = (total + count * shift).view(n, g, per_group).sum(2, keepdim=True) / (count * per_group)
        gap = mean - shift.view(n, g, per_group)
        spread = squares.view(n, g, per_group) - 2 * gap * total.view(n, g, per_group) + count * gap * gap
        var = (spread.sum(2) / (count * per_group)).clamp_(min=0)
        gain = (var + self.eps).rsqrt_().repeat_interleave(per_group, dim=1)
        if self.weight is not None:
            gain = gain * self.weight.double()
        offset = -mean.view(n, g).repeat_interleave(per_group, dim=1) * gain
        if self.bias is not None:
            offset = offset + self.bias.double()
        return gain.to(wide), offset.to(wide)

    def _native(self, x: torch.Tensor) -> torch.Tensor:
        """PyTorch's kernel, always on an NCHW map: its channels-last variant is inexact (above)
        and its backward crashes when the weight needs no gradient (torch 2.13, CPU)."""
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last)
        return super().forward(x)

    def forward(self, x: torch.Tensor, overwrite: bool = False, silu: bool = False) -> torch.Tensor:
        """norm(x), then SiLU if `silu`; `overwrite`: x may be overwritten (inference only)."""
        if not _fast_path(x):
            out = self._native(x)
            return F.silu(out, inplace=not torch.is_grad_enabled()) if silu else out
        n, c, h, _ = x.shape
        gain, offset = (t.view(n, c, 1, 1).expand(n, c, h, 1) for t in self.coefficients(x))
        return fused_multiply_add(x, gain, offset, overwrite, silu)


def group_norm(channels: int, config: DualViTokConfig) -> ChannelsLastGroupNorm:
    return ChannelsLastGroupNorm(config.pixel_norm_groups, channels, eps=config.pixel_norm_eps, affine=True)


class SpatialNorm(nn.Module):
    """GroupNorm modulated by the code map: norm(x) * conv_y(zq) + conv_b(zq), zq resized
    (nearest) to x. zq may come at any resolution of which x's is a multiple: a 1x1
    convolution commutes with nearest upsampling, so the convolutions run on the small map."""

    def __init__(self, channels: int, zq_channels: int, config: DualViTokConfig):
        super().__init__()
        self.norm_layer = group_norm(channels, config)
        self.conv_y = nn.Conv2d(zq_channels, channels, kernel_size=1)
        self.conv_b = nn.Conv2d(zq_channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor, zq: torch.Tensor, overwrite: bool = False, silu: bool = False) -> torch.Tensor:
        # conv_y and conv_b read the same map: one convolution with both weights.
        weight = torch.cat([self.conv_y.weight, self.conv_b.weight])
        bias = torch.cat([self.conv_y.bias, self.conv_b.bias])
        scale, shift = F.conv2d(zq, weight, bias).chunk(2, dim=1)
        if _fast_path(x) and _nearest_factor(zq, x) is not None:
            # (x * g + o) * scale + shift = x * (g * scale) + (o * scale + shift): the products
            # at the code map's resolution, then one pass over x.
            gain, offset = (t[:, :, None, None] for t in self.norm_layer.coefficients(x))
            return fused_multiply_add(x, scale * gain, torch.addcmul(shift, scale, offset), overwrite, silu)
        if scale.shape[-2:] != x.shape[-2:]:
            scale = F.interpolate(scale, size=x.shape[-2:], mode="nearest")
            shift = F.interpolate(shift, size=x.shape[-2:], mode="nearest")
        out = torch.addcmul(shift, self.norm_layer(x), scale)
        return F.silu(out, inplace=not torch.is_grad_enabled()) if silu else out


class GroupNormIgnoringCodes(ChannelsLastGroupNorm):
    """The encoder's plain GroupNorm, callable like a SpatialNorm (the code map is ignored)."""

    def forward(self, x: torch.Tensor, zq: torch.Tensor | None = None, overwrite: bool = False,
                silu: bool = False) -> torch.Tensor:
        return super().forward(x, overwrite, silu)


def build_norm(channels: int, config: DualViTokConfig, zq_channels: int | None = None) -> nn.Module:
    """SpatialNorm in the decoder (zq_channels given), plain GroupNorm in the encoder."""
    if zq_channels:
        return SpatialNorm(channels, zq_channels, config)
    return GroupNormIgnoringCodes(config.pixel_norm_groups, channels, eps=config.pixel_norm_eps)
