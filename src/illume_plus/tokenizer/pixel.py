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

from ..utils.memory import uses_heap_for_large_tensors
from .config import DualViTokConfig
from .pixel_norms import SpatialNorm, build_norm, group_norm


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """In inference, feature maps travel channels-last through the CNNs: oneDNN's convolutions on
    CPU run 1.3-1.6x faster on that layout, and every op in between keeps it (pixel_norms.py has
    the norms for it). The encoder's and decoder's outputs are made contiguous again. Training
    keeps the NCHW layout: PyTorch's channels-last GroupNorm backward is inexact and crashes
    (torch 2.13, CPU) when the norm's weight needs no gradient. Other devices keep NCHW and
    their native kernels."""
    if torch.is_grad_enabled() or x.device.type != "cpu":
        return x
    return x.contiguous(memory_format=torch.channels_last)


def _can_overwrite() -> bool:
    """Activations may overwrite a norm's output in place only when no backward will need it."""
    return not torch.is_grad_enabled()


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
        h = self.conv1(self.norm1(x, zq, silu=True))
        h = self.conv2(self.dropout(self.norm2(h, zq, overwrite=_can_overwrite(), silu=True)))  # h is not needed again
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
        return x + self.proj_out(out.view(b, h, w, c).permute(0, 3, 1, 2))  # a channels-last view


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
        # 2x2 block: a nearest 2x upsampling, added by broadcasting without materialising it.
        n, c, h, w = x.shape
        up = F.pixel_shuffle(self.conv(x), 2)
        up.view(n, c, h, 2, w, 2).add_(x[:, :, :, None, :, None])
        return up


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

    @uses_heap_for_large_tensors  # full-resolution maps: reuse freed memory (utils/memory.py)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(to_channels_last(x))
        for stage in self.down:
            h = stage(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        h = self.norm_out(h, overwrite=_can_overwrite(), silu=True)
        if not self.part.dc_blocks:
            return self.conv_out(h).contiguous()
        # DC-AE style output: the conv learns a residual over a channel-averaging shortcut
        # (taken after the norm and activation, as the authors' code does).
        return (self.conv_out(h) + _average_channels(h, self.part.z_channels)).contiguous()


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

    @uses_heap_for_large_tensors  # full-resolution maps: reuse freed memory (utils/memory.py)
    def forward(self, z: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        z, zq = to_channels_last(z), to_channels_last(zq)
        h = self.conv_in(z)
        if self.part.dc_blocks:
            # DC-AE style input: the conv learns a residual over a shortcut that repeats each
            # channel; added by broadcasting, in place, so h stays channels-last.
            n, c, height, width = z.shape
            h.view(n, c, self.in_shortcut_repeats, height, width).add_(z[:, :, None])
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h, zq), zq), zq)
        for stage in reversed(self.up):
            h = stage(h, zq)  # the norms bring zq to each level's size themselves
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        h = self.norm_out(h, zq, overwrite=_can_overwrite(), silu=True)
        return self.conv_out(h).contiguous()
