"""DualViTokConfig: presets, serialisation, validation, and the paper's parameter counts."""

import json

import pytest
import torch

from illume_plus import DualViTok, DualViTokConfig


def test_paper_preset_values():
    cfg = DualViTokConfig.from_name("illume-plus")
    # SPEC §2 / paper §4
    assert (cfg.vit_depth, cfg.vit_embed_dim, cfg.vit_num_heads, cfg.vit_hidden_size) == (32, 1280, 16, 3584)
    assert (cfg.semantic_head.width, cfg.semantic_head.num_blocks, cfg.semantic_decoder.num_blocks) == (1280, 4, 4)
    assert (cfg.semantic_decoder.width, cfg.semantic_decoder_out_channels) == (1280, 3584)
    assert (cfg.semantic_head.proj_layer, cfg.semantic_decoder.proj_layer) == ("linear", "linear_norm")
    assert (cfg.semantic_codebook_size, cfg.pixel_codebook_size) == (32768, 98304)
    assert (cfg.semantic_quantizer.dim, cfg.pixel_quantizer.dim, cfg.fused_dim) == (32, 32, 64)
    assert (cfg.pixel_encoder.z_channels, cfg.pixel_decoder.z_channels) == (32, 64)
    assert (cfg.pixel_encoder.ch, cfg.pixel_decoder.ch) == (128, 384)
    assert cfg.pixel_encoder.ch_mult == cfg.pixel_decoder.ch_mult == (1, 1, 2, 2, 4)
    assert cfg.pixel_decoder.num_res_blocks + 1 == 3  # blocks per decoder level
    assert cfg.pixel_encoder.dc_blocks and cfg.pixel_decoder.dc_blocks
    assert (cfg.noise_batch_rate, cfg.noise_token_rate, cfg.noise_type) == (0.1, 0.1, "random")
    assert (cfg.min_pixels, cfg.max_pixels) == (32 * 32, 512 * 512)
    assert cfg.resolution_mapping[(960, 320)] == (924, 308)
    assert cfg.pixel_downsample == 16 and cfg.semantic_downsample == 28


def test_paper_parameter_counts_on_meta_device():
    with torch.device("meta"):
        tok = DualViTok(DualViTokConfig.from_name("illume-plus"))

    def count(module):
        return sum(p.numel() for p in module.parameters())

    # Paper/SPEC: ViT ~676M, pixel decoder ~476M, whole tokenizer ~1.35B.
    assert abs(count(tok.semantic_encoder.vit) - 676e6) < 1e6
    assert abs(count(tok.pixel_decoder) - 476e6) < 1e6
    assert abs(count(tok) - 1.35e9) < 0.005e9
    assert next(tok.parameters()).is_meta  # nothing was allocated


@pytest.mark.parametrize("name", ["tiny", "illume-plus"])
def test_json_round_trip(name):
    cfg = DualViTokConfig.from_name(name, quantizer="vq", noise_type="zero")
    assert DualViTokConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_tiny_preset_is_small():
    tok = DualViTok(DualViTokConfig.from_name("tiny"))
    assert sum(p.numel() for p in tok.parameters()) < 10e6


@pytest.mark.parametrize("overrides,message", [
    (dict(quantizer="fsq"), "quantizer"),
    (dict(noise_type="gaussian"), "noise_type"),
    (dict(noise_token_rate=1.5), "noise rates"),
    (dict(semantic_head=dict(width=1000)), "divisible"),
    (dict(semantic_decoder=dict(proj_layer="conv")), "proj_layer"),
    (dict(semantic_head=dict(target="whiten")), "target"),
    (dict(pixel_decoder=dict(ch=48)), "multiples of 32"),
    (dict(pixel_encoder=dict(attn_levels=(7,))), "attn_levels"),
    (dict(pixel_decoder=dict(z_channels=48)), "DC repeating shortcut"),
    (dict(quantizer="vq", pixel_quantizer=dict(frozen_dim=16)), "frozen_dim"),
    (dict(min_pixels=10, max_pixels=5), "min_pixels"),
])
def test_invalid_values_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        DualViTokConfig.from_name("tiny", **overrides)


def test_sub_config_overrides_merge_into_the_preset():
    cfg = DualViTokConfig.from_name("tiny", pixel_decoder=dict(num_res_blocks=3, attn_levels=(2, 4)))
    assert (cfg.pixel_decoder.num_res_blocks, cfg.pixel_decoder.attn_levels) == (3, (2, 4))
    assert cfg.pixel_decoder.ch == 32  # the rest of the tiny preset's decoder stays
    assert cfg.pixel_encoder.attn_levels == (4,)


def test_flat_legacy_fields_are_still_read():
    """Config files written before the sub-configs existed (flat keys) load to the same config."""
    legacy = dict(semantic_width=128, semantic_encoder_blocks=1, semantic_decoder_blocks=2, codebook_dim=16,
                  pixel_encoder_ch=32, pixel_decoder_ch=32, pixel_attn_levels=[3], semantic_codebook_size=64)
    flat = {k: v for k, v in DualViTokConfig.from_name("tiny").to_dict().items() if not isinstance(v, dict)}
    cfg = DualViTokConfig.from_dict({**flat, **legacy})
    assert (cfg.semantic_head.width, cfg.semantic_decoder.width) == (128, 128)
    assert (cfg.semantic_head.num_blocks, cfg.semantic_decoder.num_blocks) == (1, 2)
    assert (cfg.semantic_quantizer.dim, cfg.pixel_quantizer.dim) == (16, 16)
    assert (cfg.pixel_encoder.z_channels, cfg.pixel_decoder.z_channels) == (16, 32)
    assert cfg.pixel_encoder.attn_levels == cfg.pixel_decoder.attn_levels == (3,)
    assert cfg.semantic_codebook_size == 64


def test_unknown_preset_and_fields_are_refused():
    with pytest.raises(ValueError, match="preset"):
        DualViTokConfig.from_name("huge")
    with pytest.raises(ValueError, match="unknown"):
        DualViTokConfig.from_dict({"not_a_field": 1})
    with pytest.raises(ValueError, match="unknown PixelDecoderConfig fields"):
        DualViTokConfig.from_dict({"pixel_decoder": {"chanels": 1}})
