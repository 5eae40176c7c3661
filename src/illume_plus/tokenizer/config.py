"""DualViTok configuration: every size and constant of the tokenizer, with named presets.

`from_name("illume-plus")` is the paper's model (SPEC §2); `from_name("tiny")` has the same
structure at a few million parameters (the sizes of the authors'-code fixture) for tests and CPU
runs. `from_official` reads the authors' config dict (see `official.py`).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

from ..utils.config import check_known_fields

# (H, W) -> (H', W'): the size the semantic ViT sees for the anchor sizes (SPEC §2, all H x W).
# Any other size falls back to flooring each side to a multiple of 28.
DEFAULT_SEMANTIC_RESOLUTION_MAPPING = (
    (256, 256, 252, 252),
    (512, 512, 504, 504),
    (512, 384, 448, 336),
    (384, 512, 336, 448),
    (768, 384, 728, 364),
    (384, 768, 364, 728),
    (1024, 256, 1008, 252),
    (256, 1024, 252, 1008),
    (384, 576, 336, 504),
    (576, 384, 504, 336),
    (960, 320, 924, 308),
    (320, 960, 308, 924),
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

QUANTIZER_KINDS = ("simvq", "vq")
NOISE_TYPES = ("random", "zero")


@dataclass
class DualViTokConfig:
    # --- input ---------------------------------------------------------------------------
    min_pixels: int = 32 * 32  # smart-resize bounds for arbitrary images (H*W)
    max_pixels: int = 512 * 512
    input_range_tolerance: float = 1e-3  # images may exceed [-1, 1] by this much (rounding)
    semantic_resolution_mapping: tuple = DEFAULT_SEMANTIC_RESOLUTION_MAPPING  # rows (H, W, H', W')
    semantic_image_mean: tuple = CLIP_MEAN
    semantic_image_std: tuple = CLIP_STD

    # --- semantic encoder: the frozen Qwen2-VL vision tower --------------------------------
    vit_depth: int = 32
    vit_embed_dim: int = 1280
    vit_num_heads: int = 16
    vit_mlp_ratio: float = 4
    vit_hidden_act: str = "quick_gelu"
    vit_hidden_size: int = 3584  # PatchMerger output width = semantic feature / target width
    vit_in_channels: int = 3
    vit_patch_size: int = 14
    vit_temporal_patch_size: int = 2  # a still image is repeated to this many frames
    vit_spatial_merge_size: int = 2  # one semantic token per (patch*merge)^2 = 28x28 pixels
    target_norm_eps: float = 1e-6  # LayerNorm (no affine) that turns ViT features into the target

    # --- semantic head (encoder) and semantic decoder: pre-LN ViT blocks with 2D RoPE -------
    semantic_width: int = 1280
    semantic_encoder_blocks: int = 4
    semantic_decoder_blocks: int = 4
    semantic_num_heads: int = 16  # the authors' code always uses 16, whatever the width
    semantic_mlp_ratio: float = 4
    semantic_hidden_act: str = "quick_gelu"
    semantic_norm_eps: float = 1e-6
    semantic_output_norm_eps: float = 1e-5  # LayerNorm at the end of the semantic decoder
    rope_theta: float = 10000.0

    # --- quantizers -----------------------------------------------------------------------
    quantizer: str = "simvq"  # "simvq" (paper) or "vq" (vanilla baseline of Table 8)
    codebook_dim: int = 32
    semantic_codebook_size: int = 32768
    pixel_codebook_size: int = 98304
    commitment_weight: float = 0.25
    search_block_size: int = 32768  # nearest-code search handles this many codebook rows at once

    # --- pixel encoder (MoVQ-style with DC down blocks) ------------------------------------
    pixel_encoder_ch: int = 128
    pixel_encoder_ch_mult: tuple = (1, 1, 2, 2, 4)
    pixel_encoder_num_res_blocks: int = 2
    pixel_attn_levels: tuple = (4,)  # levels (0-based) with attention after each res block
    pixel_dropout: float = 0.0
    pixel_norm_groups: int = 32
    pixel_norm_eps: float = 1e-6

    # --- pixel decoder (MoVQ with spatial norm and DC up blocks) ---------------------------
    pixel_decoder_ch: int = 384
    pixel_decoder_ch_mult: tuple = (1, 1, 2, 2, 4)
    # Each level holds num_res_blocks + 1 blocks (the authors' MoVQ decoder): 2 -> the 3 res blocks
    # per level of SPEC, and the paper's ~476M decoder parameters.
    pixel_decoder_num_res_blocks: int = 2
    out_channels: int = 3

    # --- noise injection on the pixel codes before decoding (training only) ----------------
    noise_batch_rate: float = 0.1  # alpha: probability that a sample is perturbed
    noise_token_rate: float = 0.1  # beta: fraction of a perturbed sample's pixel tokens replaced
    noise_type: str = "random"  # "random": code from another sample at (h, w); "zero": zeros

    def __post_init__(self):
        for name in ("semantic_resolution_mapping", "semantic_image_mean", "semantic_image_std",
                     "pixel_encoder_ch_mult", "pixel_decoder_ch_mult", "pixel_attn_levels"):
            value = getattr(self, name)
            setattr(self, name, tuple(tuple(v) if isinstance(v, (list, tuple)) else v for v in value))
        self.validate()

    # -- derived sizes --
    @property
    def pixel_downsample(self) -> int:
        return 2 ** (len(self.pixel_encoder_ch_mult) - 1)

    @property
    def semantic_downsample(self) -> int:
        return self.vit_patch_size * self.vit_spatial_merge_size

    @property
    def fused_dim(self) -> int:
        return 2 * self.codebook_dim  # [semantic codes, pixel codes]

    @property
    def resolution_mapping(self) -> dict:
        return {(h, w): (sh, sw) for h, w, sh, sw in self.semantic_resolution_mapping}

    def validate(self) -> None:
        def need(ok, msg):
            if not ok:
                raise ValueError(f"DualViTokConfig: {msg}")

        need(self.quantizer in QUANTIZER_KINDS, f"quantizer must be one of {QUANTIZER_KINDS}, got {self.quantizer!r}")
        need(self.noise_type in NOISE_TYPES, f"noise_type must be one of {NOISE_TYPES}, got {self.noise_type!r}")
        need(0 <= self.noise_batch_rate <= 1 and 0 <= self.noise_token_rate <= 1, "noise rates must lie in [0, 1]")
        need(self.semantic_width % self.semantic_num_heads == 0,
             f"semantic_width {self.semantic_width} not divisible by {self.semantic_num_heads} heads")
        need((self.semantic_width // self.semantic_num_heads) % 4 == 0,
             "2D RoPE needs the semantic head dim to be a multiple of 4")
        need(self.vit_embed_dim % self.vit_num_heads == 0, "vit_embed_dim not divisible by vit_num_heads")
        need(len(self.pixel_encoder_ch_mult) == len(self.pixel_decoder_ch_mult),
             "encoder and decoder need the same number of levels (same downsampling)")
        for ch, mult in ((self.pixel_encoder_ch, self.pixel_encoder_ch_mult),
                         (self.pixel_decoder_ch, self.pixel_decoder_ch_mult)):
            need(all(ch * m % self.pixel_norm_groups == 0 for m in mult),
                 f"pixel widths {ch}x{mult} must be multiples of {self.pixel_norm_groups} (GroupNorm groups)")
            need(all(ch * m % 4 == 0 for m in mult), "DC blocks need widths divisible by 4")
        need(self.pixel_encoder_ch * self.pixel_encoder_ch_mult[-1] % self.codebook_dim == 0,
             "the encoder's last width must be a multiple of codebook_dim (averaging shortcut)")
        need(self.pixel_decoder_ch * self.pixel_decoder_ch_mult[-1] % self.fused_dim == 0,
             "the decoder's first width must be a multiple of 2*codebook_dim (repeating shortcut)")
        need(all(0 <= lvl < len(self.pixel_encoder_ch_mult) for lvl in self.pixel_attn_levels),
             f"pixel_attn_levels {self.pixel_attn_levels} outside the {len(self.pixel_encoder_ch_mult)} levels")
        need(0 < self.min_pixels <= self.max_pixels, "need 0 < min_pixels <= max_pixels")
        for row in self.semantic_resolution_mapping:
            need(len(row) == 4 and all(v % self.semantic_downsample == 0 for v in row[2:]),
                 f"semantic mapping row {row} must be (H, W, H', W') with H', W' multiples of "
                 f"{self.semantic_downsample}")

    # -- presets --
    @classmethod
    def from_name(cls, name: str, **overrides) -> "DualViTokConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown DualViTok preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @classmethod
    def from_official(cls, model_config: dict, vit_config: dict | None = None, **overrides) -> "DualViTokConfig":
        """Config from the authors' DualViTok config dict and their ViT `config.json` dict
        (the paper's Qwen2-VL-7B tower when `vit_config` is None)."""
        from .official import config_kwargs_from_official

        return cls(**{**config_kwargs_from_official(model_config, vit_config), **overrides})

    # -- serialisation --
    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: _to_lists(v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "DualViTokConfig":
        check_known_fields(cls, d)
        return cls(**copy.deepcopy(d))

    def vit_config_kwargs(self) -> dict:
        """Keyword arguments for transformers' `Qwen2VLVisionConfig`."""
        return dict(depth=self.vit_depth, embed_dim=self.vit_embed_dim, hidden_size=self.vit_hidden_size,
                    hidden_act=self.vit_hidden_act, mlp_ratio=self.vit_mlp_ratio, num_heads=self.vit_num_heads,
                    in_channels=self.vit_in_channels, patch_size=self.vit_patch_size,
                    spatial_merge_size=self.vit_spatial_merge_size,
                    temporal_patch_size=self.vit_temporal_patch_size)


def _to_lists(v):
    return [_to_lists(x) for x in v] if isinstance(v, (list, tuple)) else v


PRESETS: dict[str, dict] = {
    # The paper's tokenizer: Qwen2-VL-7B vision tower, 32,768 / 98,304 codes (SPEC §2). ~1.35B params.
    "illume-plus": {},
    # Same structure, a few million parameters (the sizes of the authors'-code fixture).
    "tiny": dict(
        vit_depth=2, vit_embed_dim=64, vit_num_heads=2, vit_hidden_size=96,
        semantic_width=128, semantic_encoder_blocks=1, semantic_decoder_blocks=1,
        semantic_codebook_size=256, pixel_codebook_size=512,
        pixel_encoder_ch=32, pixel_encoder_num_res_blocks=1,
        pixel_decoder_ch=32, pixel_decoder_num_res_blocks=1,
    ),
}

__all__ = ["DualViTokConfig", "PRESETS", "DEFAULT_SEMANTIC_RESOLUTION_MAPPING", "CLIP_MEAN", "CLIP_STD"]
