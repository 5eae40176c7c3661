"""Pixel branch: a MoVQ-style CNN encoder/decoder with DC-AE style down/up blocks (or, with
`dc_blocks=False`, MoVQ's strided-conv / nearest-upsampling blocks without shortcuts).

The encoder maps (B, 3, H, W) to (B, z, H/16, W/16) with the paper's five levels. The decoder is
conditioned on the fused 64-channel code map through spatial norms. Parameter names follow the
authors' checkpoint (`down.{i}.block.{j}`, `down.{i}.downsample.conv`, `up.{i}` indexed by level,
`mid.*`, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import DualViTokConfig


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """Feature maps travel channels-last through the CNNs: oneDNN's convolutions on CPU run
    1.4-1.6x faster on that layout (measured on the decoder), and every op in between keeps it.
    The encoder's and decoder's outputs are made contiguous again."""
    return x.contiguous(memory_format=torch.channels_last)


def _can_overwrite() -> bool:
    """Activations may overwrite a norm's output in place only when no backward will need it."""
    return not torch.is_grad_enabled()


def group_norm(channels: int, config: DualViTokConfig) -> nn.GroupNorm:
    return nn.GroupNorm(config.pixel_norm_groups, channels, eps=config.pixel_norm_eps, affine=True)


class SpatialNorm(nn.Module):
    """GroupNorm modulated by the code map: norm(x) * conv_y(zq) + conv_b(zq), zq resized (nearest) to x."""

    def __init__(self, channels: int, zq_channels: int, config: DualViTokConfig):
        super().__init__()
        self.norm_layer = group_norm(channels, config)
        self.conv_y = nn.Conv2d(zq_channels, channels, kernel_size=1)
        self.conv_b = nn.Conv2d(zq_channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        if zq.shape[-2:] != x.shape[-2:]:
            zq = F.interpolate(zq, size=x.shape[-2:], mode="nearest")
        # conv_y and conv_b read the same map: one convolution with both weights, then
        # norm * y + b in one pass (addcmul) instead of a product and a sum.
        weight = torch.cat([self.conv_y.weight, self.conv_b.weight])
        bias = torch.cat([self.conv_y.bias, self.conv_b.bias])
        scale, shift = F.conv2d(zq, weight, bias).chunk(2, dim=1)
        return torch.addcmul(shift, self.norm_layer(x), scale)


class GroupNormIgnoringCodes(nn.GroupNorm):
    """The encoder's plain GroupNorm, callable like a SpatialNorm (the code map is ignored)."""

    def forward(self, x: torch.Tensor, zq: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x)


def build_norm(channels: int, config: DualViTokConfig, zq_channels: int | None = None) -> nn.Module:
    """SpatialNorm in the decoder (zq_channels given), plain GroupNorm in the encoder."""
    if zq_channels:
        return SpatialNorm(channels, zq_channels, config)
    return GroupNormIgnoringCodes(config.pixel_norm_groups, channels, eps=config.pixel_norm_eps)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, config: DualViTokConfig, zq_channels: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        self.norm1 = build_norm(in_channels, config, zq_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = build_norm(out_channels, config, zq_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, zq: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x, zq), inplace=_can_overwrite()))
        h = self.conv2(self.dropout(F.silu(self.norm2(h, zq), inplace=_can_overwrite())))
        return h.add_(x if self.nin_shortcut is None else self.nin_shortcut(x))


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, 1x1 conv projections."""

    def __init__(self, channels: int, config: DualViTokConfig, zq_channels: int | None = None):
        super().__init__()
        self.norm = build_norm(channels, config, zq_channels)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor, zq: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x, zq)
        q, k, v = (proj(y).flatten(2).transpose(1, 2)[:, None] for proj in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)[:, 0]  # (B, hw, C)
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, h, w))


class DCDownsample(nn.Module):
    """2x down: conv C->C/4 then pixel-unshuffle, plus a 2x2 average-pool shortcut (DC-AE style)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels // 4, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = F.avg_pool2d(x, 2)  # the mean of each channel's 2x2 window, in one pass
        return F.pixel_unshuffle(self.conv(x), 2) + shortcut


class DCUpsample(nn.Module):
    """2x up: conv C->4C then pixel-shuffle, plus a nearest-upsampling shortcut (DC-AE style)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The shortcut (each channel repeated 4x, then pixel-shuffled) puts every value in its
        # 2x2 block: a nearest 2x upsampling, computed without the 4x-wide intermediate.
        shortcut = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return F.pixel_shuffle(self.conv(x), 2).add_(shortcut)


class StridedDownsample(nn.Module):
    """2x down without shortcut (MoVQ): pad right and bottom by one, 3x3 conv with stride 2."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class NearestUpsample(nn.Module):
    """2x up without shortcut (MoVQ): nearest-neighbour upsampling, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _average_channels(x: torch.Tensor, out_channels: int) -> torch.Tensor:
    """Average consecutive groups of channels down to out_channels."""
    b, c, h, w = x.shape
    return x.view(b, out_channels, c // out_channels, h, w).mean(dim=2)


class Level(nn.Module):
    """One resolution level: res blocks, attention after each block at attention levels.
    The encoder adds a `downsample`, the decoder an `upsample` (names of the authors' checkpoint)."""

    def __init__(self):
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()

    def forward(self, h: torch.Tensor, zq: torch.Tensor | None = None) -> torch.Tensor:
        for i, block in enumerate(self.block):
            h = block(h, zq)
            if len(self.attn):
                h = self.attn[i](h, zq)
        return h


class PixelEncoder(nn.Module):
    def __init__(self, config: DualViTokConfig):
        super().__init__()
        part = self.part = config.pixel_encoder
        self.conv_in = nn.Conv2d(config.vit_in_channels, part.ch, kernel_size=3, padding=1)
        self.down = nn.ModuleList()
        widths = part.widths()
        for level, block_out in enumerate(widths):
            # a level starts at the previous level's width (equal to where the blocks left it,
            # unless a level has no blocks: num_res_blocks=0)
            block_in, stage = ([part.ch] + widths)[level], Level()
            for _ in range(part.num_res_blocks):
                stage.block.append(ResnetBlock(block_in, block_out, config, dropout=part.dropout))
                block_in = block_out
                if level in part.attn_levels:
                    stage.attn.append(AttnBlock(block_in, config))
            if level != len(part.ch_mult) - 1:
                stage.downsample = DCDownsample(block_in) if part.dc_blocks else StridedDownsample(block_in)
            self.down.append(stage)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, config, dropout=part.dropout)
        self.mid.attn_1 = AttnBlock(block_in, config)
        self.mid.block_2 = ResnetBlock(block_in, block_in, config, dropout=part.dropout)
        self.norm_out = group_norm(block_in, config)
        self.conv_out = nn.Conv2d(block_in, part.z_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            h = stage(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        h = F.silu(self.norm_out(h))
        if not self.part.dc_blocks:
            return self.conv_out(h)
        # DC-AE style output: the conv learns a residual over a channel-averaging shortcut
        # (taken after the norm and activation, as the authors' code does).
        return self.conv_out(h) + _average_channels(h, self.part.z_channels)


class PixelDecoder(nn.Module):
    """z (B, z_channels, h, w) -> image (B, 3, 16h, 16w); every norm is a SpatialNorm over the
    fused codes zq (B, D_sem + D_pix, h, w)."""

    def __init__(self, config: DualViTokConfig):
        super().__init__()
        part = self.part = config.pixel_decoder
        zq_ch = config.fused_dim
        widths = part.widths()
        block_in = widths[-1]
        # the DC input shortcut repeats each channel this often (the authors divide by the fused width)
        self.in_shortcut_repeats = block_in // zq_ch
        self.conv_in = nn.Conv2d(part.z_channels, block_in, kernel_size=3, padding=1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, config, zq_ch, part.dropout)
        self.mid.attn_1 = AttnBlock(block_in, config, zq_ch)
        self.mid.block_2 = ResnetBlock(block_in, block_in, config, zq_ch, part.dropout)
        levels = [None] * len(widths)  # up.{i} is indexed by level; they run from the last to 0
        for level in reversed(range(len(widths))):
            stage, block_out = Level(), widths[level]
            for _ in range(part.num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, block_out, config, zq_ch, part.dropout))
                block_in = block_out
                if level in part.attn_levels:
                    stage.attn.append(AttnBlock(block_in, config, zq_ch))
            if level != 0:
                stage.upsample = DCUpsample(block_in) if part.dc_blocks else NearestUpsample(block_in)
            levels[level] = stage
        self.up = nn.ModuleList(levels)
        self.norm_out = SpatialNorm(block_in, zq_ch, config)
        self.conv_out = nn.Conv2d(block_in, part.out_channels, kernel_size=3, padding=1)

    def forward(self, z: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        z, zq = to_channels_last(z), to_channels_last(zq)
        h = self.conv_in(z)
        if self.part.dc_blocks:  # DC-AE style input: the conv learns a residual over a channel-repeating shortcut
            h = h + z.repeat_interleave(self.in_shortcut_repeats, dim=1)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h, zq), zq), zq)
        for stage in reversed(self.up):
            # Resize the code map once per level rather than in each of the level's norms.
            zq_level = F.interpolate(zq, size=h.shape[-2:], mode="nearest")
            h = stage(h, zq_level)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        h = F.silu(self.norm_out(h, zq_level), inplace=_can_overwrite())  # level 0 has no upsample: same size
        return self.conv_out(h).contiguous()
