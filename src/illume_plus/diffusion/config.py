"""Configuration of the ILLUME+ diffusion decoder: an SDXL UNet conditioned on DualViTok codes.

The three diffusers components keep their own diffusers configs (saved in `unet/`, `vae/`,
`scheduler/`); `DiffusionDecoderConfig` holds what ties them to the tokenizer: the codebooks,
the output-size table of the SDXL micro-conditioning and the resolution factors (SPEC §4).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields

# (width, height) of the outputs the released decoder knows; add_time_ids = [0,0,0,0,0, index].
SDXL_DECODER_SIZE_TABLE: list[list[int]] = [
    [1024, 1024], [768, 1024], [1024, 768], [512, 2048], [2048, 512], [640, 1920],
    [1920, 640], [768, 1536], [1536, 768], [768, 1152], [1152, 768], [512, 512],
]

# The SDXL base UNet (diffusers names), widened to 4 latent + 64 code channels.
SDXL_UNET_CONFIG: dict = {
    "sample_size": 128,
    "in_channels": 68,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [320, 640, 1280],
    "layers_per_block": 2,
    "transformer_layers_per_block": [1, 2, 10],
    "attention_head_dim": [5, 10, 20],
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,  # pooled 1280 + 6 time ids x 256
    "norm_num_groups": 32,
}

# The SDXL VAE (scale 8, 4 latent channels, scaling 0.13025; fp16 overflows, hence force_upcast).
SDXL_VAE_CONFIG: dict = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}

# Euler with the SDXL defaults (what the fixture's reference run used).
SDXL_SCHEDULER_CONFIG: dict = {
    "_class_name": "EulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
    "steps_offset": 1,
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
}

# Same structure, toy widths: for tests and CPU runs (the fixture's tiny configuration).
TINY_UNET_CONFIG: dict = {
    "sample_size": 64,
    "in_channels": 68,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "transformer_layers_per_block": [1, 1],
    "attention_head_dim": [2, 4],
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 1328,  # pooled 1280 + 6 time ids x 8
    "norm_num_groups": 8,
}

TINY_VAE_CONFIG: dict = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [16, 16, 32, 32],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 64,
    "scaling_factor": 0.13025,
    "force_upcast": False,
}


@dataclass
class CodeEmbedderConfig:
    """The two DualViTok codebooks whose codes condition the UNet (SPEC §2: SimVQ, dim 32)."""

    semantic_codebook_size: int = 32768
    pixel_codebook_size: int = 98304
    code_dim: int = 32
    quantizer: str = "simvq"  # "simvq" | "vq": the kind of the tokenizer the codes come from

    @property
    def fused_channels(self) -> int:
        return 2 * self.code_dim


@dataclass
class DiffusionDecoderConfig:
    code_embedder: CodeEmbedderConfig = field(default_factory=CodeEmbedderConfig)
    # (width, height) table of SDXL micro-conditioning; the index of the output size is time id 5.
    size_table: list = field(default_factory=lambda: copy.deepcopy(SDXL_DECODER_SIZE_TABLE))
    # Outside the table: "nearest_aspect" takes the entry of closest aspect ratio, "error" refuses.
    unknown_size: str = "nearest_aspect"
    pixel_token_stride: int = 16  # pixels of the token image per pixel token
    upscale_factor: int = 2  # output resolution / token-image resolution
    prompt_length: int = 77  # zero prompt embeddings [B, prompt_length, cross_attention_dim]
    pooled_prompt_dim: int = 1280  # zero pooled embeddings [B, pooled_prompt_dim]
    # diffusers configs used when building components with random weights (presets).
    unet: dict = field(default_factory=lambda: copy.deepcopy(SDXL_UNET_CONFIG))
    vae: dict = field(default_factory=lambda: copy.deepcopy(SDXL_VAE_CONFIG))
    scheduler: dict = field(default_factory=lambda: copy.deepcopy(SDXL_SCHEDULER_CONFIG))

    def __post_init__(self):
        if isinstance(self.code_embedder, dict):
            self.code_embedder = CodeEmbedderConfig(**self.code_embedder)
        if self.unknown_size not in ("nearest_aspect", "error"):
            raise ValueError(f"unknown_size must be 'nearest_aspect' or 'error', got {self.unknown_size!r}")
        if any(len(entry) != 2 for entry in self.size_table):
            raise ValueError(f"size_table entries must be (width, height) pairs, got {self.size_table}")
        self.size_table = [list(map(int, entry)) for entry in self.size_table]

    @property
    def output_stride(self) -> int:
        """Output pixels per pixel token (16 x 2 = 32)."""
        return self.pixel_token_stride * self.upscale_factor

    @classmethod
    def from_name(cls, name: str) -> "DiffusionDecoderConfig":
        if name == "sdxl":
            return cls()
        if name == "tiny":
            return cls(code_embedder=CodeEmbedderConfig(semantic_codebook_size=256, pixel_codebook_size=512),
                       unet=copy.deepcopy(TINY_UNET_CONFIG), vae=copy.deepcopy(TINY_VAE_CONFIG))
        raise ValueError(f"unknown diffusion decoder preset {name!r}; choose 'tiny' or 'sdxl'")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "DiffusionDecoderConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown DiffusionDecoderConfig fields: {sorted(unknown)}")
        return cls(**values)
