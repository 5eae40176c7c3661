"""DualViTokConfig: presets, serialisation, validation, and the paper's parameter counts."""

import json

import pytest
import torch

from illume_plus import DualViTok, DualViTokConfig


def test_paper_preset_values():
    cfg = DualViTokConfig.from_name("illume-plus")
    # SPEC §2 / paper §4
    assert (cfg.vit_depth, cfg.vit_embed_dim, cfg.vit_num_heads, cfg.vit_hidden_size) == (32, 1280, 16, 3584)
    assert (cfg.semantic_width, cfg.semantic_encoder_blocks, cfg.semantic_decoder_blocks) == (1280, 4, 4)
    assert (cfg.semantic_codebook_size, cfg.pixel_codebook_size, cfg.codebook_dim) == (32768, 98304, 32)
    assert (cfg.pixel_encoder_ch, cfg.pixel_decoder_ch) == (128, 384)
    assert cfg.pixel_encoder_ch_mult == cfg.pixel_decoder_ch_mult == (1, 1, 2, 2, 4)
    assert cfg.pixel_decoder_num_res_blocks + 1 == 3  # blocks per decoder level
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
    (dict(semantic_width=1000), "divisible"),
    (dict(pixel_decoder_ch=48), "multiples of 32"),
    (dict(pixel_attn_levels=(7,)), "pixel_attn_levels"),
    (dict(min_pixels=10, max_pixels=5), "min_pixels"),
])
def test_invalid_values_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        DualViTokConfig.from_name("tiny", **overrides)


def test_unknown_preset_and_fields_are_refused():
    with pytest.raises(ValueError, match="preset"):
        DualViTokConfig.from_name("huge")
    with pytest.raises(ValueError, match="unknown"):
        DualViTokConfig.from_dict({"not_a_field": 1})
