import copy

import pytest
import torch
from diffusers import UNet2DConditionModel

from illume_plus.diffusion import DiffusionDecoder, DiffusionDecoderConfig, widen_conv_in


def four_channel_unet():
    config = copy.deepcopy(DiffusionDecoderConfig.from_name("tiny").unet)
    config["in_channels"] = 4
    return UNet2DConditionModel(**config).eval()


def unet_call(unet, sample):
    return unet(sample, 500, encoder_hidden_states=torch.randn(1, 77, 2048, generator=torch.Generator().manual_seed(1)),
                added_cond_kwargs={"text_embeds": torch.zeros(1, 1280), "time_ids": torch.zeros(1, 6)}).sample


@torch.no_grad()
def test_widened_conv_in_starts_as_the_original_unet():
    unet = four_channel_unet()
    latent = torch.randn(1, 4, 16, 16)
    before = unet_call(unet, latent)
    widen_conv_in(unet, 64)
    assert unet.config.in_channels == 68 and unet.conv_in.in_channels == 68
    assert not unet.conv_in.weight[:, 4:].any()
    after = unet_call(unet, torch.cat([latent, 10 * torch.randn(1, 64, 16, 16)], dim=1))
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)


def test_decoder_refuses_an_unwidened_unet():
    with pytest.raises(ValueError, match="widen"):
        DiffusionDecoder(DiffusionDecoderConfig.from_name("tiny"), unet=four_channel_unet())


@torch.no_grad()
def test_decoder_zero_codes_equal_plain_latent_input():
    """Zero code features (the unconditional row) contribute nothing beyond the conv_in bias path:
    the decoder on zero codes equals the UNet on [latent, zeros]."""
    decoder = DiffusionDecoder(DiffusionDecoderConfig.from_name("tiny")).eval()
    latent = torch.randn(2, 4, 8, 8)
    out = decoder(latent, 10, torch.zeros(2, 64, 2, 2), 11)
    sample = torch.cat([latent, torch.zeros(2, 64, 8, 8)], dim=1)
    expected = decoder.unet(sample, 10, encoder_hidden_states=torch.zeros(2, 77, 2048),
                            added_cond_kwargs={"text_embeds": torch.zeros(2, 1280),
                                               "time_ids": torch.tensor([[0, 0, 0, 0, 0, 11.0]] * 2)}).sample
    torch.testing.assert_close(out, expected)
    # the size index is an input: changing it changes the prediction
    assert not torch.allclose(decoder(latent, 10, torch.zeros(2, 64, 2, 2), 0), out)


def test_sdxl_preset_is_the_sdxl_base_unet_widened():
    with torch.device("meta"):  # shapes only: no 2.6B-parameter allocation
        decoder = DiffusionDecoder(DiffusionDecoderConfig.from_name("sdxl"))
    unet = decoder.unet
    assert unet.conv_in.weight.shape == (320, 68, 3, 3)
    assert unet.add_embedding.linear_1.in_features == 2816  # pooled 1280 + 6 x 256
    # SDXL base UNet: 2,567,463,684 parameters; widening adds 320 x 64 x 3 x 3 conv_in weights
    assert sum(p.numel() for p in unet.parameters()) == 2_567_463_684 + 320 * 64 * 9
    assert decoder.code_embedder.config.semantic_codebook_size == 32768
    assert decoder.code_embedder.config.pixel_codebook_size == 98304
