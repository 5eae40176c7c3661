"""Semantic branch: the frozen Qwen2-VL vision tower, the semantic head that compresses its
features to 32-d codes, and the semantic decoder that reconstructs them.

Module and parameter names follow the authors' checkpoint (`semantic_encoder.model.*`,
`semantic_encoder.{proj_in,blocks,proj_out.0}`, `semantic_decoder.{proj_in,blocks,proj_out.0,
proj_out.1}`), so their state dict loads without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import DualViTokConfig, SemanticBlocksConfig
from .preprocess import semantic_patches

_ACTIVATIONS = {"quick_gelu": lambda x: x * torch.sigmoid(1.702 * x), "gelu": F.gelu, "silu": F.silu}


def grid_rope_angles(height: int, width: int, head_dim: int, theta: float, device=None) -> torch.Tensor:
    """RoPE angles (height*width, head_dim) for tokens on a (height, width) grid in raster order.

    Half of the rotary frequencies encode the row, half the column (head_dim/4 each), as the
    Qwen2-VL vision tower does; the angles are then tiled to the head dim for rotate-half.
    """
    dim = head_dim // 2
    inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim)
    rows = torch.arange(height, device=device).repeat_interleave(width).float()
    cols = torch.arange(width, device=device).repeat(height).float()
    angles = torch.cat([rows[:, None] * inv_freq, cols[:, None] * inv_freq], dim=-1)  # (N, head_dim/2)
    return torch.cat([angles, angles], dim=-1)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """x (B, heads, N, head_dim); rotation computed in fp32."""
    xf = x.float()
    out = xf * angles.cos() + _rotate_half(xf) * angles.sin()
    return out.to(x.dtype)


class SelfAttention(nn.Module):
    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, rope_angles: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, rope_angles), apply_rope(k, rope_angles)
        out = F.scaled_dot_product_attention(q, k, v)  # every token sees the whole grid
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int, act: str):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = _ACTIVATIONS[act]
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Pre-LN ViT block of the Qwen2-VL vision tower (names: norm1, attn.qkv, attn.proj, norm2, mlp.fc1/fc2)."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float, act: str, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.attn = SelfAttention(width, num_heads)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.mlp = MLP(width, int(width * mlp_ratio), act)

    def forward(self, x: torch.Tensor, rope_angles: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope_angles)
        return x + self.mlp(self.norm2(x))


class _GridTransformer(nn.Module):
    """Blocks over a (B, C, h, w) token grid; tokens in raster order."""

    def _build_blocks(self, part: SemanticBlocksConfig, rope_theta: float):
        self.blocks = nn.ModuleList(
            TransformerBlock(part.width, part.num_heads, part.mlp_ratio, part.hidden_act, part.norm_eps)
            for _ in range(part.num_blocks))
        self.head_dim = part.width // part.num_heads
        self.rope_theta = rope_theta

    def _run_blocks(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        angles = grid_rope_angles(height, width, self.head_dim, self.rope_theta, tokens.device)
        for block in self.blocks:
            tokens = block(tokens, angles)
        return tokens


def projection(kind: str, width: int, out_channels: int, norm_eps: float) -> nn.Sequential:
    """The output projection of a semantic part (the authors' `proj_layer`; indices are their keys)."""
    if kind == "linear":
        return nn.Sequential(nn.Linear(width, out_channels))
    if kind == "norm_linear":
        return nn.Sequential(nn.LayerNorm(width, eps=norm_eps), nn.Linear(width, out_channels))
    if kind == "linear_norm":
        return nn.Sequential(nn.Linear(width, out_channels), nn.LayerNorm(out_channels, eps=norm_eps))
    if kind == "mlp":
        return nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, out_channels))
    raise ValueError(f"unknown projection {kind!r}")


def build_vit(config: DualViTokConfig) -> nn.Module:
    """transformers' Qwen2-VL vision tower (the authors' parameter names) from a DualViTok config."""
    from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLVisionConfig
    from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel

    vit_config = Qwen2VLVisionConfig(**config.vit_config_kwargs())
    vit_config._attn_implementation = "sdpa"
    return Qwen2VisionTransformerPretrainedModel(vit_config)


def vit_merged_features(vit: nn.Module, images: torch.Tensor, semantic_size: tuple[int, int],
                        config: DualViTokConfig) -> torch.Tensor:
    """Images (B, 3, H, W) in [-1, 1] -> merged ViT features (B, hs*ws, vit_hidden_size), raster order."""
    patches, grid_thw = semantic_patches(
        images, semantic_size, config.semantic_image_mean, config.semantic_image_std, config.vit_patch_size,
        config.vit_temporal_patch_size, config.vit_spatial_merge_size)
    out = vit(patches.to(vit.patch_embed.proj.weight.dtype), grid_thw=grid_thw)
    # transformers 5 returns an output object (merged features in pooler_output); 4.x the tensor.
    merged = out.pooler_output if hasattr(out, "pooler_output") else out
    return merged.view(images.shape[0], -1, merged.shape[-1])


class SemanticEncoder(_GridTransformer):
    """Frozen ViT -> LayerNorm target; target -> proj_in -> blocks -> proj_out -> (B, D_sem, hs, ws)."""

    def __init__(self, config: DualViTokConfig):
        super().__init__()
        self.config = config
        self.model = build_vit(config)
        self.model.requires_grad_(False)
        self.model.eval()
        head = config.semantic_head
        self.proj_in = nn.Conv2d(config.vit_hidden_size, head.width, kernel_size=1)
        self._build_blocks(head, config.rope_theta)
        self.proj_out = projection(head.proj_layer, head.width, config.semantic_quantizer.dim, head.proj_norm_eps)

    @property
    def vit(self) -> nn.Module:
        """The frozen Qwen2-VL vision tower (stored as `model` to keep the authors' key names)."""
        return self.model

    def reset_non_persistent_buffers(self) -> None:
        """Recompute the ViT's RoPE frequencies (not in checkpoints) after loading onto the meta device."""
        rope = self.model.rotary_pos_emb
        if any(b.is_meta for b in rope.buffers()):
            self.model.rotary_pos_emb = type(rope)(self.model.config)

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()  # frozen: never in training mode
        return self

    @torch.no_grad()
    def vit_features(self, images: torch.Tensor, semantic_size: tuple[int, int]) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> merged ViT features (B, hs*ws, vit_hidden_size), raster order."""
        return vit_merged_features(self.model, images, semantic_size, self.config)

    def target(self, features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Distillation target, as (B, C, hs, ws): LayerNorm (no affine) of the ViT features, or
        the features themselves (`semantic_head.target`)."""
        head = self.config.semantic_head
        target = features.float()
        if head.target == "norm":
            target = F.layer_norm(target, features.shape[-1:], eps=head.target_norm_eps)
        return target.transpose(1, 2).reshape(features.shape[0], -1, *grid)

    def head(self, target: torch.Tensor) -> torch.Tensor:
        """Target map (B, C_vit, hs, ws) -> pre-quantisation features (B, D_sem, hs, ws)."""
        b, _, h, w = target.shape
        tokens = self.proj_in(target.to(self.proj_in.weight.dtype)).flatten(2).transpose(1, 2)
        tokens = self._run_blocks(tokens, h, w)
        return self.proj_out(tokens).transpose(1, 2).reshape(b, -1, h, w)


class SemanticDecoder(_GridTransformer):
    """Semantic codes (B, D_sem, hs, ws) -> reconstructed target (B, C_vit, hs, ws)."""

    def __init__(self, config: DualViTokConfig):
        super().__init__()
        part = config.semantic_decoder
        self.proj_in = nn.Linear(config.semantic_quantizer.dim, part.width)
        self._build_blocks(part, config.rope_theta)
        self.proj_out = projection(part.proj_layer, part.width, config.semantic_decoder_out_channels,
                                   part.proj_norm_eps)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        b, _, h, w = codes.shape
        tokens = self.proj_in(codes.flatten(2).transpose(1, 2))
        tokens = self._run_blocks(tokens, h, w)
        return self.proj_out(tokens).transpose(1, 2).reshape(b, -1, h, w)
