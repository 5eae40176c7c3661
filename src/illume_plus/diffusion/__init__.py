"""The ILLUME+ diffusion decoder: an SDXL UNet that turns DualViTok codes into images at 2x the
token resolution (SPEC §4)."""

from .conditioning import (CodeEmbedder, drop_code_branches, latent_conditioning, perturb_token_ids,
                           size_condition_index, size_time_ids)
from .config import CodeEmbedderConfig, DiffusionDecoderConfig
from .decoder import DiffusionDecoder, widen_conv_in
from .pipeline import DiffusionDecoderPipeline, build_scheduler

__all__ = ["CodeEmbedder", "CodeEmbedderConfig", "DiffusionDecoder", "DiffusionDecoderConfig",
           "DiffusionDecoderPipeline", "build_scheduler", "drop_code_branches", "latent_conditioning",
           "perturb_token_ids", "size_condition_index", "size_time_ids", "widen_conv_in"]
