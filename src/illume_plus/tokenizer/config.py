"""DualViTok configuration: every size and constant of the tokenizer, with named presets.

The four trainable parts have their own sub-configs, as the authors' config dict has its own
section for each (`semantic_encoder`, `semantic_decoder`, `pixel_encoder`, `pixel_decoder`), and
so do the two quantizers; the frozen ViT, the input handling and noise injection stay top-level.

`from_name("illume-plus")` is the paper's model (SPEC §2); `from_name("tiny")` has the same
structure at a few million parameters (the sizes of the authors'-code fixture) for tests and CPU
runs. `from_official` reads the authors' config dict (see `official.py`). Configs written before
the sub-configs existed (flat keys such as `semantic_width`) are still read (`LEGACY_FIELDS`).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

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
# Which code maps reach the decoder: both (the paper's DualViTok) or one, for the single-branch
# baselines of the paper's tokenizer ablation. The dropped branch's codes are all id 0 and its
# channels of the fused map are zeros, so the decoder sees nothing of it.
BRANCHES = ("dual", "semantic", "pixel")
# Output projections of the semantic parts (the authors' `proj_layer` values).
HEAD_PROJECTIONS = ("linear", "norm_linear", "mlp")
DECODER_PROJECTIONS = ("linear_norm", "linear", "norm_linear", "mlp")
HEAD_TARGETS = ("norm", "identity")


def _need(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(f"DualViTokConfig: {msg}")


@dataclass
class SemanticBlocksConfig:
    """Pre-LN ViT blocks with 2D RoPE, as in the Qwen2-VL vision tower."""

    width: int = 1280
    num_blocks: int = 4
    num_heads: int = 16  # the authors' code always uses 16, whatever the width
    mlp_ratio: float = 4
    hidden_act: str = "quick_gelu"
    norm_eps: float = 1e-6
    proj_norm_eps: float = 1e-5  # the LayerNorm of a "norm_linear" / "linear_norm" projection

    def validate(self, name: str) -> None:
        _need(self.num_blocks >= 0, f"{name}.num_blocks must be >= 0, got {self.num_blocks}")
        _need(self.width % self.num_heads == 0, f"{name}.width {self.width} not divisible by {self.num_heads} heads")
        _need((self.width // self.num_heads) % 4 == 0, f"2D RoPE needs the {name} head dim to be a multiple of 4")


@dataclass
class SemanticHeadConfig(SemanticBlocksConfig):
    """The trainable semantic encoder: ViT target -> proj_in -> blocks -> proj_out -> semantic codes."""

    proj_layer: str = "linear"  # one of HEAD_PROJECTIONS
    target: str = "norm"  # distilled and fed to the head: "norm" (LayerNorm, no affine) or "identity"
    target_norm_eps: float = 1e-6

    def validate(self, name: str = "semantic_head") -> None:
        super().validate(name)
        _need(self.proj_layer in HEAD_PROJECTIONS, f"{name}.proj_layer must be one of {HEAD_PROJECTIONS}, "
                                                   f"got {self.proj_layer!r}")
        _need(self.target in HEAD_TARGETS, f"{name}.target must be one of {HEAD_TARGETS}, got {self.target!r}")


@dataclass
class SemanticDecoderConfig(SemanticBlocksConfig):
    """Semantic codes -> proj_in -> blocks -> proj_out -> reconstructed ViT target."""

    proj_layer: str = "linear_norm"  # one of DECODER_PROJECTIONS
    out_channels: int | None = None  # None: the ViT's width (what the distillation loss compares)

    def validate(self, name: str = "semantic_decoder") -> None:
        super().validate(name)
        _need(self.proj_layer in DECODER_PROJECTIONS, f"{name}.proj_layer must be one of {DECODER_PROJECTIONS}, "
                                                      f"got {self.proj_layer!r}")
        _need(self.out_channels is None or self.out_channels > 0, f"{name}.out_channels must be positive")


@dataclass
class QuantizerConfig:
    codebook_size: int = 32768
    dim: int = 32  # code width
    frozen_dim: int | None = None  # SimVQ: width of the frozen random codebook (None: `dim`)
    commitment_weight: float = 0.25  # weight of |z - sg(q)|^2 against |sg(z) - q|^2
    loss_weight: float = 1.0  # multiplies the whole quantizer loss
    rotation_trick: bool = False  # gradients through the rotation trick instead of straight-through

    def validate(self, name: str, kind: str) -> None:
        _need(self.codebook_size > 0 and self.dim > 0, f"{name}: codebook_size and dim must be positive")
        _need(self.frozen_dim is None or (kind == "simvq" and self.frozen_dim > 0),
              f"{name}.frozen_dim is a positive SimVQ setting, got {self.frozen_dim} for {kind!r}")


@dataclass
class PixelPartConfig:
    """A MoVQ-style CNN: levels of res blocks (attention after each block at `attn_levels`)."""

    ch: int = 128
    ch_mult: tuple = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    attn_levels: tuple = (4,)  # levels (0-based) with attention (the authors' `attn_resolutions`)
    dropout: float = 0.0
    dc_blocks: bool = True  # DC-AE down/up blocks and shortcuts; False: MoVQ's strided/nearest convs

    def widths(self) -> list[int]:
        return [self.ch * m for m in self.ch_mult]

    def validate(self, name: str, norm_groups: int) -> None:
        _need(len(self.ch_mult) >= 1 and self.num_res_blocks >= 0, f"{name} needs levels and num_res_blocks >= 0")
        _need(all(w % norm_groups == 0 for w in [self.ch, *self.widths()]),
              f"{name} widths {self.ch}x{self.ch_mult} must be multiples of {norm_groups} (GroupNorm groups)")
        _need(not self.dc_blocks or all(w % 4 == 0 for w in self.widths()), f"{name}: DC blocks need widths "
                                                                            "divisible by 4")
        _need(all(0 <= lvl < len(self.ch_mult) for lvl in self.attn_levels),
              f"{name}.attn_levels {self.attn_levels} outside the {len(self.ch_mult)} levels")


@dataclass
class PixelEncoderConfig(PixelPartConfig):
    z_channels: int = 32  # output width, before pixel_quant_conv (the MLLM's pixel feature width)

    @property
    def out_width(self) -> int:
        """Width of the last level (a level without blocks keeps the previous level's width)."""
        return ([self.ch] + self.widths())[-1 if self.num_res_blocks else -2]

    def validate(self, name: str = "pixel_encoder", norm_groups: int = 32) -> None:
        super().validate(name, norm_groups)
        # Without blocks a level does not change the width, so the levels only chain if the widths
        # before the last level are all `ch` (the authors' encoder fails otherwise too).
        _need(self.num_res_blocks > 0 or all(m == 1 for m in self.ch_mult[:-1]),
              f"{name} with num_res_blocks=0 needs ch_mult[:-1] all 1, got {self.ch_mult}")
        _need(not self.dc_blocks or self.out_width % self.z_channels == 0,
              f"{name}: its last width {self.out_width} must be a multiple of z_channels {self.z_channels} "
              "(DC averaging shortcut)")


@dataclass
class PixelDecoderConfig(PixelPartConfig):
    ch: int = 384
    # Each level holds num_res_blocks + 1 blocks (the authors' MoVQ decoder): 2 -> the 3 res blocks
    # per level of SPEC, and the paper's ~476M decoder parameters.
    num_res_blocks: int = 2
    z_channels: int = 64  # pixel_post_quant_conv output, conv_in input
    out_channels: int = 3

    def validate(self, name: str = "pixel_decoder", norm_groups: int = 32, fused_dim: int = 64) -> None:
        super().validate(name, norm_groups)
        first = self.widths()[-1]
        _need(not self.dc_blocks or self.z_channels * (first // fused_dim) == first,
              f"{name}: DC repeating shortcut: z_channels {self.z_channels} x ({first} // fused codes {fused_dim}) "
              f"must equal its first width {first}")


SUB_CONFIGS = {"semantic_head": SemanticHeadConfig, "semantic_decoder": SemanticDecoderConfig,
               "semantic_quantizer": QuantizerConfig, "pixel_quantizer": QuantizerConfig,
               "pixel_encoder": PixelEncoderConfig, "pixel_decoder": PixelDecoderConfig}


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

    # --- the four trainable parts and the two quantizers -----------------------------------
    semantic_head: SemanticHeadConfig = field(default_factory=SemanticHeadConfig)
    semantic_decoder: SemanticDecoderConfig = field(default_factory=SemanticDecoderConfig)
    rope_theta: float = 10000.0  # 2D RoPE of both semantic parts
    quantizer: str = "simvq"  # both quantizers: "simvq" (paper) or "vq" (vanilla baseline of Table 8)
    semantic_quantizer: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(codebook_size=32768))
    pixel_quantizer: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(codebook_size=98304))
    search_block_size: int = 32768  # nearest-code search handles this many codebook rows at once
    pixel_encoder: PixelEncoderConfig = field(default_factory=PixelEncoderConfig)
    pixel_decoder: PixelDecoderConfig = field(default_factory=PixelDecoderConfig)
    pixel_norm_groups: int = 32  # GroupNorm of both pixel parts
    pixel_norm_eps: float = 1e-6

    # --- noise injection on the pixel codes before decoding (training only) ----------------
    noise_batch_rate: float = 0.1  # alpha: probability that a sample is perturbed
    noise_token_rate: float = 0.1  # beta: probability that a position of a perturbed sample is replaced
    noise_type: str = "random"  # "random": the previous sample's code at (h, w); "zero": zeros

    # --- ablation: "dual" (paper), or a single branch decoded alone (see BRANCHES) -----------
    branches: str = "dual"

    def __post_init__(self):
        for name, cls in SUB_CONFIGS.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                check_known_fields(cls, value)
                setattr(self, name, cls(**value))
        for part in (self.pixel_encoder, self.pixel_decoder):
            part.ch_mult, part.attn_levels = tuple(part.ch_mult), tuple(part.attn_levels)
        for name in ("semantic_resolution_mapping", "semantic_image_mean", "semantic_image_std"):
            value = getattr(self, name)
            setattr(self, name, tuple(tuple(v) if isinstance(v, (list, tuple)) else v for v in value))
        self.validate()

    # -- derived sizes --
    @property
    def pixel_downsample(self) -> int:
        return 2 ** (len(self.pixel_encoder.ch_mult) - 1)

    @property
    def pixel_upsample(self) -> int:
        return 2 ** (len(self.pixel_decoder.ch_mult) - 1)

    @property
    def semantic_downsample(self) -> int:
        return self.vit_patch_size * self.vit_spatial_merge_size

    @property
    def semantic_codebook_size(self) -> int:
        return self.semantic_quantizer.codebook_size

    @property
    def pixel_codebook_size(self) -> int:
        return self.pixel_quantizer.codebook_size

    @property
    def fused_dim(self) -> int:
        return self.semantic_quantizer.dim + self.pixel_quantizer.dim  # [semantic codes, pixel codes]

    @property
    def semantic_decoder_out_channels(self) -> int:
        return self.semantic_decoder.out_channels or self.vit_hidden_size

    @property
    def resolution_mapping(self) -> dict:
        return {(h, w): (sh, sw) for h, w, sh, sw in self.semantic_resolution_mapping}

    def validate(self) -> None:
        _need(self.quantizer in QUANTIZER_KINDS, f"quantizer must be one of {QUANTIZER_KINDS}, got {self.quantizer!r}")
        _need(self.branches in BRANCHES, f"branches must be one of {BRANCHES}, got {self.branches!r}")
        _need(self.noise_type in NOISE_TYPES, f"noise_type must be one of {NOISE_TYPES}, got {self.noise_type!r}")
        _need(0 <= self.noise_batch_rate <= 1 and 0 <= self.noise_token_rate <= 1, "noise rates must lie in [0, 1]")
        _need(self.vit_embed_dim % self.vit_num_heads == 0, "vit_embed_dim not divisible by vit_num_heads")
        self.semantic_head.validate()
        self.semantic_decoder.validate()
        self.semantic_quantizer.validate("semantic_quantizer", self.quantizer)
        self.pixel_quantizer.validate("pixel_quantizer", self.quantizer)
        self.pixel_encoder.validate(norm_groups=self.pixel_norm_groups)
        self.pixel_decoder.validate(norm_groups=self.pixel_norm_groups, fused_dim=self.fused_dim)
        _need(0 < self.min_pixels <= self.max_pixels, "need 0 < min_pixels <= max_pixels")
        for row in self.semantic_resolution_mapping:
            _need(len(row) == 4 and all(v % self.semantic_downsample == 0 for v in row[2:]),
                  f"semantic mapping row {row} must be (H, W, H', W') with H', W' multiples of "
                  f"{self.semantic_downsample}")

    # -- presets --
    @classmethod
    def from_name(cls, name: str, **overrides) -> "DualViTokConfig":
        """A preset with `overrides`: top-level fields, sub-config dicts (merged into the preset's),
        or the flat names of `LEGACY_FIELDS`."""
        if name not in PRESETS:
            raise ValueError(f"unknown DualViTok preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**_merge(copy.deepcopy(PRESETS[name]), nest_legacy_fields(overrides)))

    @classmethod
    def from_official(cls, model_config: dict, vit_config: dict | None = None, **overrides) -> "DualViTokConfig":
        """Config from the authors' DualViTok config dict and their ViT `config.json` dict
        (the paper's Qwen2-VL-7B tower when `vit_config` is None)."""
        from .official import config_kwargs_from_official

        return cls(**_merge(config_kwargs_from_official(model_config, vit_config), nest_legacy_fields(overrides)))

    # -- serialisation --
    def to_dict(self) -> dict:
        return _to_lists(asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> "DualViTokConfig":
        d = nest_legacy_fields(copy.deepcopy(d))
        check_known_fields(cls, d)
        return cls(**d)

    def vit_config_kwargs(self) -> dict:
        """Keyword arguments for transformers' `Qwen2VLVisionConfig`."""
        return dict(depth=self.vit_depth, embed_dim=self.vit_embed_dim, hidden_size=self.vit_hidden_size,
                    hidden_act=self.vit_hidden_act, mlp_ratio=self.vit_mlp_ratio, num_heads=self.vit_num_heads,
                    in_channels=self.vit_in_channels, patch_size=self.vit_patch_size,
                    spatial_merge_size=self.vit_spatial_merge_size,
                    temporal_patch_size=self.vit_temporal_patch_size)


# Flat field names of the config before it had sub-configs -> the nested fields they set.
# "codebook_dim" set every code width at once (the decoder's z_channels is twice it).
LEGACY_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "semantic_width": (("semantic_head", "width"), ("semantic_decoder", "width")),
    "semantic_encoder_blocks": (("semantic_head", "num_blocks"),),
    "semantic_decoder_blocks": (("semantic_decoder", "num_blocks"),),
    "semantic_num_heads": (("semantic_head", "num_heads"), ("semantic_decoder", "num_heads")),
    "semantic_mlp_ratio": (("semantic_head", "mlp_ratio"), ("semantic_decoder", "mlp_ratio")),
    "semantic_hidden_act": (("semantic_head", "hidden_act"), ("semantic_decoder", "hidden_act")),
    "semantic_norm_eps": (("semantic_head", "norm_eps"), ("semantic_decoder", "norm_eps")),
    "semantic_output_norm_eps": (("semantic_decoder", "proj_norm_eps"),),
    "target_norm_eps": (("semantic_head", "target_norm_eps"),),
    "semantic_codebook_size": (("semantic_quantizer", "codebook_size"),),
    "pixel_codebook_size": (("pixel_quantizer", "codebook_size"),),
    "commitment_weight": (("semantic_quantizer", "commitment_weight"), ("pixel_quantizer", "commitment_weight")),
    "pixel_encoder_ch": (("pixel_encoder", "ch"),),
    "pixel_encoder_ch_mult": (("pixel_encoder", "ch_mult"),),
    "pixel_encoder_num_res_blocks": (("pixel_encoder", "num_res_blocks"),),
    "pixel_decoder_ch": (("pixel_decoder", "ch"),),
    "pixel_decoder_ch_mult": (("pixel_decoder", "ch_mult"),),
    "pixel_decoder_num_res_blocks": (("pixel_decoder", "num_res_blocks"),),
    "pixel_attn_levels": (("pixel_encoder", "attn_levels"), ("pixel_decoder", "attn_levels")),
    "pixel_dropout": (("pixel_encoder", "dropout"), ("pixel_decoder", "dropout")),
    "out_channels": (("pixel_decoder", "out_channels"),),
}


def nest_legacy_fields(values: dict) -> dict:
    """Rewrite flat legacy names (LEGACY_FIELDS, and `codebook_dim`) into sub-config dicts."""
    values = dict(values)
    nested: dict[str, dict] = {}
    if "codebook_dim" in values:
        dim = values.pop("codebook_dim")
        for part, key, value in (("semantic_quantizer", "dim", dim), ("pixel_quantizer", "dim", dim),
                                 ("pixel_encoder", "z_channels", dim), ("pixel_decoder", "z_channels", 2 * dim)):
            nested.setdefault(part, {})[key] = value
    for name in [k for k in values if k in LEGACY_FIELDS]:
        value = values.pop(name)
        for part, key in LEGACY_FIELDS[name]:
            nested.setdefault(part, {})[key] = value
    return _merge(nested, values)


def _merge(base: dict, overrides: dict) -> dict:
    """`overrides` into `base`; a dict (or sub-config) override of a dict entry is merged key by key."""
    out = dict(base)
    for key, value in overrides.items():
        if not isinstance(value, dict) and hasattr(value, "__dataclass_fields__"):
            value = asdict(value)
        current = out.get(key)
        if hasattr(current, "__dataclass_fields__"):
            current = asdict(current)
        out[key] = _merge(current, value) if isinstance(current, dict) and isinstance(value, dict) else value
    return out


def _to_lists(v):
    if isinstance(v, dict):
        return {k: _to_lists(x) for k, x in v.items()}
    return [_to_lists(x) for x in v] if isinstance(v, (list, tuple)) else v


PRESETS: dict[str, dict] = {
    # The paper's tokenizer: Qwen2-VL-7B vision tower, 32,768 / 98,304 codes (SPEC §2). ~1.35B params.
    "illume-plus": {},
    # Same structure, a few million parameters (the sizes of the authors'-code fixture).
    "tiny": dict(
        vit_depth=2, vit_embed_dim=64, vit_num_heads=2, vit_hidden_size=96,
        semantic_head=dict(width=128, num_blocks=1), semantic_decoder=dict(width=128, num_blocks=1),
        semantic_quantizer=dict(codebook_size=256), pixel_quantizer=dict(codebook_size=512),
        pixel_encoder=dict(ch=32, num_res_blocks=1), pixel_decoder=dict(ch=32, num_res_blocks=1),
    ),
}

__all__ = ["DualViTokConfig", "SemanticHeadConfig", "SemanticDecoderConfig", "QuantizerConfig",
           "PixelEncoderConfig", "PixelDecoderConfig", "PRESETS", "LEGACY_FIELDS", "nest_legacy_fields",
           "DEFAULT_SEMANTIC_RESOLUTION_MAPPING", "CLIP_MEAN", "CLIP_STD"]
