"""DualViTok: the dual-branch image tokenizer of ILLUME+ (SPEC §2).

    images (B,3,H,W) in [-1,1]
      ├─ semantic: frozen Qwen2-VL ViT (28x) ─ LayerNorm target ─ head ─ SimVQ ─> semantic_ids (H'/28, W'/28)
      └─ pixel:    CNN encoder (16x) ─ quant_conv ─ SimVQ ───────────────────> pixel_ids (H/16, W/16)
    decode: codes ─ fuse (semantic bicubic-upsampled, concat) ─ post_quant_conv ─ pixel decoder ─> image
            semantic codes ─ semantic decoder ─> reconstructed ViT target (distillation loss)

Module and parameter names equal the authors' checkpoint, so `from_official` loads it strictly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..utils.io import load_json, load_safetensors, save_json, save_safetensors
from ..utils.state_dict import check_materialized, check_state_dict_keys
from .config import DualViTokConfig, QuantizerConfig
from .fusion import fuse_code_maps, inject_code_noise
from .official import load_official_state_dict
from .pixel import PixelDecoder, PixelEncoder
from .preprocess import image_to_tensor, semantic_input_size
from .quantizer import VectorQuantizer, build_quantizer
from .semantic import SemanticDecoder, SemanticEncoder

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class DualViTokEncoding:
    semantic_ids: torch.Tensor  # (B, hs, ws) int64
    pixel_ids: torch.Tensor  # (B, hp, wp) int64
    semantic_features: torch.Tensor  # (B, hs*ws, C_vit) ViT merger output, raster order
    pixel_features: torch.Tensor  # (B, z_channels, hp, wp) pixel encoder output, before pixel_quant_conv
    semantic_codes: torch.Tensor  # (B, D_sem, hs, ws) straight-through quantised
    pixel_codes: torch.Tensor  # (B, D_pix, hp, wp) straight-through quantised
    semantic_target: torch.Tensor  # (B, C_vit, hs, ws) LayerNorm of the ViT features (fp32)
    semantic_commit_loss: torch.Tensor
    pixel_commit_loss: torch.Tensor


@dataclass
class DualViTokOutput:
    reconstruction: torch.Tensor  # (B, 3, H, W), not clamped
    semantic_target: torch.Tensor  # (B, C_vit, hs, ws)
    semantic_reconstruction: torch.Tensor  # (B, C_vit, hs, ws): the semantic decoder's output
    semantic_commit_loss: torch.Tensor
    pixel_commit_loss: torch.Tensor
    semantic_ids: torch.Tensor
    pixel_ids: torch.Tensor


class DualViTok(nn.Module):
    def __init__(self, config: DualViTokConfig):
        super().__init__()
        self.config = config
        self.semantic_encoder = SemanticEncoder(config)
        self.semantic_quantizer: VectorQuantizer = _quantizer(config, config.semantic_quantizer)
        self.semantic_decoder = SemanticDecoder(config)
        self.pixel_encoder = PixelEncoder(config)
        self.pixel_quant_conv = nn.Conv2d(config.pixel_encoder.z_channels, config.pixel_quantizer.dim, kernel_size=1)
        self.pixel_quantizer: VectorQuantizer = _quantizer(config, config.pixel_quantizer)
        self.pixel_post_quant_conv = nn.Conv2d(config.fused_dim, config.pixel_decoder.z_channels, kernel_size=1)
        self.pixel_decoder = PixelDecoder(config)

    # ---------------------------------------------------------------- sizes and checks
    def semantic_input_size(self, height: int, width: int) -> tuple[int, int]:
        """(H', W') the ViT sees for an (H, W) image (SPEC's mapping table, else floor to 28)."""
        return semantic_input_size(height, width, self.config.resolution_mapping, self.config.semantic_downsample)

    def semantic_grid_size(self, height: int, width: int) -> tuple[int, int]:
        h, w = self.semantic_input_size(height, width)
        return h // self.config.semantic_downsample, w // self.config.semantic_downsample

    def pixel_grid_size(self, height: int, width: int) -> tuple[int, int]:
        f = self.config.pixel_downsample
        return height // f, width // f

    def check_images(self, images) -> None:
        """Raise ValueError naming the problem unless `images` is (B, 3, H, W) in [-1, 1], H, W multiples of 16."""
        if not isinstance(images, torch.Tensor):
            raise ValueError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.dim() != 4:
            raise ValueError(f"images must have 4 dims (B, C, H, W), got shape {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"images must be floating point in [-1, 1], got {images.dtype}")
        b, c, h, w = images.shape
        if c != self.config.vit_in_channels:
            raise ValueError(f"images must have {self.config.vit_in_channels} channels (RGB), got {c}")
        f = self.config.pixel_downsample
        if b == 0 or h < f or w < f or h % f or w % f:
            raise ValueError(f"image sides must be positive multiples of {f}, got {h}x{w} (batch {b}); "
                             f"resize with DualViTok.preprocess (PIL) or preprocess.smart_resize")
        if not torch.isfinite(images).all():
            raise ValueError("images contain NaN or infinite values")
        lo, hi = float(images.min()), float(images.max())
        tol = self.config.input_range_tolerance
        if lo < -1 - tol or hi > 1 + tol:
            raise ValueError(f"images must lie in [-1, 1], got values in [{lo:.4g}, {hi:.4g}] "
                             f"(scale [0, 1] images with x * 2 - 1)")

    def preprocess(self, images) -> torch.Tensor:
        """Image(s) (PIL images of any mode, paths or bytes; read by `utils.images.load_image`) ->
        (B, 3, H, W) in [-1, 1], smart-resized to valid sizes. Several images must come out the
        same size to share a batch."""
        images = images if isinstance(images, (list, tuple)) else [images]
        cfg = self.config
        tensors = [image_to_tensor(im, cfg.pixel_downsample, cfg.min_pixels, cfg.max_pixels) for im in images]
        sizes = {tuple(t.shape[-2:]) for t in tensors}
        if len(sizes) > 1:
            raise ValueError(f"images resize to different sizes {sorted(sizes)}; preprocess them one at a time")
        return torch.stack(tensors)

    # ---------------------------------------------------------------- encoding
    def encode_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuous features for the MLLM: ViT merger output (B, hs*ws, C_vit) and pixel
        encoder output (B, z_channels, hp, wp). No head, no quantizer."""
        self.check_images(images)
        semantic = self.semantic_encoder.vit_features(images, self.semantic_input_size(*images.shape[-2:]))
        return semantic, self.pixel_encoder(images)

    def encode(self, images: torch.Tensor) -> DualViTokEncoding:
        """Images (B, 3, H, W) in [-1, 1] -> code grids, straight-through codes, features and losses."""
        semantic_features, pixel_features = self.encode_features(images)
        grid = self.semantic_grid_size(*images.shape[-2:])
        target = self.semantic_encoder.target(semantic_features, grid)
        semantic_q = self.semantic_quantizer(self.semantic_encoder.head(target))
        pixel_q = self.pixel_quantizer(self.pixel_quant_conv(pixel_features))
        semantic_ids, pixel_ids = semantic_q.indices, pixel_q.indices
        if self.config.branches == "pixel":  # single-branch ablation: the dropped map carries no information
            semantic_ids = torch.zeros_like(semantic_ids)
        elif self.config.branches == "semantic":
            pixel_ids = torch.zeros_like(pixel_ids)
        return DualViTokEncoding(
            semantic_ids=semantic_ids, pixel_ids=pixel_ids,
            semantic_features=semantic_features, pixel_features=pixel_features,
            semantic_codes=semantic_q.quantized, pixel_codes=pixel_q.quantized, semantic_target=target,
            semantic_commit_loss=semantic_q.loss, pixel_commit_loss=pixel_q.loss)

    # ---------------------------------------------------------------- decoding
    def codes_from_ids(self, semantic_ids: torch.Tensor, pixel_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if semantic_ids.dim() != 3 or pixel_ids.dim() != 3 or semantic_ids.shape[0] != pixel_ids.shape[0]:
            raise ValueError(f"expected index grids (B, hs, ws) and (B, hp, wp), got {tuple(semantic_ids.shape)} "
                             f"and {tuple(pixel_ids.shape)}")
        return self.semantic_quantizer.lookup(semantic_ids), self.pixel_quantizer.lookup(pixel_ids)

    def fused_codes(self, semantic_ids: torch.Tensor, pixel_ids: torch.Tensor) -> torch.Tensor:
        """(B, D_sem + D_pix, hp, wp) fused code map from indices (conditions the pixel and diffusion decoders)."""
        return fuse_code_maps(*self.codes_from_ids(semantic_ids, pixel_ids))

    def decode_codes(self, semantic_codes: torch.Tensor, pixel_codes: torch.Tensor) -> torch.Tensor:
        """Code maps (B, D_sem, hs, ws), (B, D_pix, hp, wp) -> image (B, 3, 16hp, 16wp), not clamped.
        In training mode, noise is injected into the pixel codes (robust decoding, SPEC §2)."""
        if self.training:
            cfg = self.config
            pixel_codes = inject_code_noise(pixel_codes, cfg.noise_batch_rate, cfg.noise_token_rate, cfg.noise_type)
        if self.config.branches == "pixel":
            semantic_codes = torch.zeros_like(semantic_codes)
        elif self.config.branches == "semantic":
            pixel_codes = torch.zeros_like(pixel_codes)
        fused = fuse_code_maps(semantic_codes, pixel_codes)
        dtype = self.pixel_post_quant_conv.weight.dtype
        fused = fused.to(dtype)
        return self.pixel_decoder(self.pixel_post_quant_conv(fused), fused)

    def decode(self, semantic_ids: torch.Tensor, pixel_ids: torch.Tensor) -> torch.Tensor:
        """Index grids -> image (B, 3, H, W) in about [-1, 1]."""
        return self.decode_codes(*self.codes_from_ids(semantic_ids, pixel_ids))

    def decode_semantic(self, semantic_codes: torch.Tensor) -> torch.Tensor:
        """Semantic codes (B, D_sem, hs, ws) -> reconstructed ViT target (B, C_vit, hs, ws)."""
        return self.semantic_decoder(semantic_codes.to(self.semantic_decoder.proj_in.weight.dtype))

    def forward(self, images: torch.Tensor) -> DualViTokOutput:
        enc = self.encode(images)
        return DualViTokOutput(
            reconstruction=self.decode_codes(enc.semantic_codes, enc.pixel_codes),
            semantic_target=enc.semantic_target,
            semantic_reconstruction=self.decode_semantic(enc.semantic_codes),
            semantic_commit_loss=enc.semantic_commit_loss, pixel_commit_loss=enc.pixel_commit_loss,
            semantic_ids=enc.semantic_ids, pixel_ids=enc.pixel_ids)

    # ---------------------------------------------------------------- persistence
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        save_json(self.config.to_dict(), directory / CONFIG_NAME)
        save_safetensors(self.state_dict(), directory / WEIGHTS_NAME)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, dtype: torch.dtype | None = None) -> "DualViTok":
        directory = Path(directory)
        config = DualViTokConfig.from_dict(load_json(directory / CONFIG_NAME))
        return cls.from_state_dict(config, load_safetensors(directory / WEIGHTS_NAME), dtype=dtype)

    @classmethod
    def from_official(cls, checkpoint, config: DualViTokConfig, dtype: torch.dtype | None = None,
                      use_ema: bool = False) -> "DualViTok":
        """Load the authors' `pytorch_model.bin` (path, or an already loaded state dict, whose
        tensors the model then uses without a copy). Strict: every key must match. A training
        checkpoint holding "model" and "ema" gives "model" unless `use_ema` (their default)."""
        return cls.from_state_dict(config, load_official_state_dict(checkpoint, use_ema=use_ema), dtype=dtype)

    def load_vit_weights(self, source: str | os.PathLike | dict) -> None:
        """Load the Qwen2-VL vision tower weights (see `load_vit_weights`), e.g. before training."""
        load_vit_weights(self, source)

    @classmethod
    def from_state_dict(cls, config: DualViTokConfig, state_dict: dict,
                        dtype: torch.dtype | None = None) -> "DualViTok":
        """Build without random initialisation (on the meta device) and load `state_dict` strictly."""
        with torch.device("meta"):
            model = cls(config)
        check_state_dict_keys(model, state_dict, "the DualViTok config")
        model.load_state_dict(state_dict, strict=True, assign=True)
        model.semantic_encoder.reset_non_persistent_buffers()
        check_materialized(model)
        if dtype is not None:
            model.to(dtype)
        return model.eval()


def _quantizer(config: DualViTokConfig, part: QuantizerConfig) -> VectorQuantizer:
    extra = {"frozen_dim": part.frozen_dim} if part.frozen_dim else {}
    return build_quantizer(config.quantizer, part.codebook_size, part.dim, commitment_weight=part.commitment_weight,
                           loss_weight=part.loss_weight, rotation_trick=part.rotation_trick,
                           search_block_size=config.search_block_size, **extra)


VIT_KEY_PREFIXES = ("semantic_encoder.model.", "model.visual.", "visual.", "vision_tower.", "")


def load_vit_weights(tok: DualViTok, source: str | os.PathLike | dict) -> None:
    """Load the frozen Qwen2-VL vision tower from a local transformers folder (`*.safetensors`,
    sharded or not: a Qwen2-VL model or a bare vision tower), a `.safetensors` file, the authors'
    DualViTok checkpoint (`pytorch_model.bin`, possibly wrapped) or a state dict. Keys may carry a
    `visual.` / `model.visual.` / `semantic_encoder.model.` prefix; only the ViT's keys are taken,
    strictly."""
    if isinstance(source, dict):
        state = source
    elif not Path(source).exists():
        raise FileNotFoundError(f"ViT weights not found: {source}")
    elif Path(source).is_file() and Path(source).suffix != ".safetensors":
        state = load_official_state_dict(source)
    else:
        files = sorted(Path(source).glob("*.safetensors")) if Path(source).is_dir() else [Path(source)]
        if not files:
            raise FileNotFoundError(f"no .safetensors files in {source}")
        state = {k: v for f in files for k, v in load_safetensors(f).items()}
    vit = tok.semantic_encoder.vit
    expected = set(vit.state_dict())
    for prefix in VIT_KEY_PREFIXES:
        picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if expected <= set(picked):
            check_state_dict_keys(vit, {k: picked[k] for k in expected}, "the Qwen2-VL vision tower")
            vit.load_state_dict({k: picked[k] for k in expected}, strict=True)
            return
    raise ValueError(f"no Qwen2-VL vision tower found in {source if not isinstance(source, dict) else 'state dict'}: "
                     f"expected keys such as {sorted(expected)[:3]} under one of the prefixes {VIT_KEY_PREFIXES}")
