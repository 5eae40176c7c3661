"""The denoiser of the ILLUME+ diffusion decoder: an SDXL UNet whose input is the noisy latent
concatenated with the fused DualViTok code map (4 + 64 = 68 channels), and whose text
conditioning is replaced by zeros plus an output-size label (SPEC §4).

Shared by sampling (`pipeline.py`) and training (`training/decoder.py`), so both build the
UNet input in exactly one way.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from .conditioning import CodeEmbedder, latent_conditioning, size_time_ids
from .config import DiffusionDecoderConfig


class DiffusionDecoder(nn.Module):
    def __init__(self, config: DiffusionDecoderConfig, unet: UNet2DConditionModel | None = None,
                 code_embedder: CodeEmbedder | None = None):
        super().__init__()
        self.config = config
        self.unet = unet if unet is not None else UNet2DConditionModel(**config.unet)
        self.code_embedder = code_embedder if code_embedder is not None else CodeEmbedder(config.code_embedder)
        self._check_compatible()

    @property
    def latent_channels(self) -> int:
        return self.unet.config.out_channels

    def _check_compatible(self) -> None:
        unet_config = self.unet.config
        code_channels = self.code_embedder.config.fused_channels
        if unet_config.in_channels != self.latent_channels + code_channels:
            raise ValueError(f"UNet takes {unet_config.in_channels} input channels; the decoder needs "
                             f"{self.latent_channels} latent + {code_channels} code channels "
                             f"(widen an SDXL UNet with `widen_conv_in`)")
        if unet_config.addition_embed_type != "text_time":
            raise ValueError(f"UNet must use SDXL micro-conditioning (addition_embed_type='text_time'), "
                             f"got {unet_config.addition_embed_type!r}")
        expected = self.config.pooled_prompt_dim + 6 * unet_config.addition_time_embed_dim
        if unet_config.projection_class_embeddings_input_dim != expected:
            raise ValueError(f"UNet projection_class_embeddings_input_dim is "
                             f"{unet_config.projection_class_embeddings_input_dim}, expected pooled "
                             f"{self.config.pooled_prompt_dim} + 6 x {unet_config.addition_time_embed_dim} "
                             f"= {expected}")

    def fused_codes(self, semantic_ids: torch.Tensor, pixel_ids: torch.Tensor) -> torch.Tensor:
        """(B,h1,w1), (B,h2,w2) code grids -> (B, 64, h2, w2) fp32 fused code map."""
        return self.code_embedder(semantic_ids, pixel_ids)

    def forward(self, latent_input: torch.Tensor, timestep: torch.Tensor | float, fused_codes: torch.Tensor,
                size_index: int | torch.Tensor) -> torch.Tensor:
        """Predict the scheduler's target (noise or velocity).

        latent_input: (B, 4, H/8, W/8) noisy latent, already scaled by the scheduler
        fused_codes:  (B, 64, h2, w2) code map, zeros for unconditional rows
        size_index:   index of the output size in `config.size_table` (int, or one per sample)
        """
        b = latent_input.shape[0]
        if fused_codes.shape[0] != b:
            raise ValueError(f"{fused_codes.shape[0]} code maps for {b} latents")
        dtype, device = latent_input.dtype, latent_input.device
        codes = latent_conditioning(fused_codes.to(device=device, dtype=dtype), latent_input.shape[-2:])
        sample = torch.cat([latent_input, codes], dim=1)
        # The text encoders are gone: zero prompt and pooled embeddings in every row.
        prompt_embeds = torch.zeros(b, self.config.prompt_length, self.unet.config.cross_attention_dim,
                                    device=device, dtype=dtype)
        pooled_embeds = torch.zeros(b, self.config.pooled_prompt_dim, device=device, dtype=dtype)
        time_ids = size_time_ids(size_index, b, device=device, dtype=dtype)
        return self.unet(sample, timestep, encoder_hidden_states=prompt_embeds,
                         added_cond_kwargs={"text_embeds": pooled_embeds, "time_ids": time_ids}).sample


@torch.no_grad()
def widen_conv_in(unet: UNet2DConditionModel, extra_channels: int) -> UNet2DConditionModel:
    """Give `unet.conv_in` `extra_channels` more input channels with zero weights, in place.

    The new channels start with no effect, so the widened UNet computes exactly what the
    original computed: fine-tuning starts from SDXL, not from a perturbed copy of it."""
    if extra_channels <= 0:
        raise ValueError(f"extra_channels must be positive, got {extra_channels}")
    old = unet.conv_in
    new = nn.Conv2d(old.in_channels + extra_channels, old.out_channels, old.kernel_size, old.stride,
                    old.padding, bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype)
    new.weight.zero_()
    new.weight[:, :old.in_channels].copy_(old.weight)
    if old.bias is not None:
        new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=new.in_channels)
    return unet
