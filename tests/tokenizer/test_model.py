"""DualViTok behaviour on the tiny preset (random weights): shapes, sizes, gradients, persistence, bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from illume_plus import DualViTok, DualViTokConfig
from illume_plus.tokenizer.preprocess import image_to_tensor

# SPEC §2: semantic grid = mapped size / 28, pixel grid = size / 16, for the 11 generation sizes (H x W).
GENERATION_SIZES = {
    (512, 512): (18, 18), (384, 512): (12, 16), (512, 384): (16, 12), (384, 768): (13, 26),
    (768, 384): (26, 13), (384, 576): (12, 18), (576, 384): (18, 12), (320, 960): (11, 33),
    (960, 320): (33, 11), (256, 1024): (9, 36), (1024, 256): (36, 9),
}


@pytest.fixture(scope="module")
def tok():
    torch.manual_seed(0)
    return DualViTok(DualViTokConfig.from_name("tiny")).eval()


def images(b, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g) * 2 - 1


@pytest.mark.parametrize("size,semantic_grid", GENERATION_SIZES.items())
def test_grid_sizes_of_generation_sizes(tok, size, semantic_grid):
    assert tok.semantic_grid_size(*size) == semantic_grid
    assert tok.pixel_grid_size(*size) == (size[0] // 16, size[1] // 16)


@pytest.mark.parametrize("size,semantic_grid", [((224, 336), (8, 12)), ((32, 48), (1, 1)), ((80, 64), (2, 2))])
def test_grid_sizes_outside_the_table_floor_to_28(tok, size, semantic_grid):
    assert tok.semantic_grid_size(*size) == semantic_grid


@pytest.mark.parametrize("b,h,w", [(2, 32, 64), (1, 64, 48)])
def test_encode_decode_shapes(tok, b, h, w):
    x = images(b, h, w)
    with torch.no_grad():
        enc = tok.encode(x)
        hs, ws = tok.semantic_grid_size(h, w)
        hp, wp = tok.pixel_grid_size(h, w)
        assert enc.semantic_ids.shape == (b, hs, ws) and enc.semantic_ids.dtype == torch.int64
        assert enc.pixel_ids.shape == (b, hp, wp) and enc.pixel_ids.dtype == torch.int64
        assert 0 <= enc.semantic_ids.min() and enc.semantic_ids.max() < tok.config.semantic_codebook_size
        assert 0 <= enc.pixel_ids.min() and enc.pixel_ids.max() < tok.config.pixel_codebook_size
        assert enc.semantic_features.shape == (b, hs * ws, tok.config.vit_hidden_size)
        assert enc.pixel_features.shape == (b, tok.config.pixel_encoder.z_channels, hp, wp)
        fused_dim = tok.config.semantic_quantizer.dim + tok.config.pixel_quantizer.dim
        assert tok.fused_codes(enc.semantic_ids, enc.pixel_ids).shape == (b, fused_dim, hp, wp)
        assert tok.decode(enc.semantic_ids, enc.pixel_ids).shape == (b, 3, h, w)


def test_encode_features_equal_encode(tok):
    x = images(1, 32, 64)
    with torch.no_grad():
        semantic, pixel = tok.encode_features(x)
        enc = tok.encode(x)
    assert torch.equal(semantic, enc.semantic_features) and torch.equal(pixel, enc.pixel_features)


def test_batch_items_are_independent(tok):
    x = images(2, 32, 32)
    with torch.no_grad():
        both = tok.encode(x)
        second = tok.encode(x[1:])
    assert torch.equal(both.semantic_ids[1:], second.semantic_ids)
    assert torch.equal(both.pixel_ids[1:], second.pixel_ids)


def test_eval_round_trip_is_deterministic(tok):
    x = images(1, 32, 32)
    with torch.no_grad():
        first, second = tok.encode(x), tok.encode(x)
        assert torch.equal(first.semantic_ids, second.semantic_ids) and torch.equal(first.pixel_ids, second.pixel_ids)
        decoded = [tok.decode(e.semantic_ids, e.pixel_ids) for e in (first, second)]
        assert torch.equal(*decoded)


def test_forward_outputs(tok):
    x = images(2, 64, 32)
    with torch.no_grad():
        out = tok(x)
    hs, ws = tok.semantic_grid_size(64, 32)
    assert out.reconstruction.shape == x.shape
    assert out.semantic_target.shape == out.semantic_reconstruction.shape == (2, tok.config.vit_hidden_size, hs, ws)
    assert out.semantic_commit_loss.dim() == 0 and out.pixel_commit_loss.dim() == 0


def test_straight_through_gradients_reach_encoders_not_vit():
    torch.manual_seed(0)
    tok = DualViTok(DualViTokConfig.from_name("tiny", noise_batch_rate=0.0)).train()
    assert not tok.semantic_encoder.vit.training  # frozen tower stays in eval mode
    out = tok(images(2, 32, 32))
    # Only the decoders' losses: the encoders receive gradient solely through the straight-through codes.
    (out.reconstruction.square().mean() + out.semantic_reconstruction.square().mean()).backward()
    for module in (tok.pixel_encoder.conv_in, tok.pixel_quant_conv, tok.semantic_encoder.proj_in,
                   tok.semantic_encoder.blocks[0].attn.qkv):
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0
    vit = list(tok.semantic_encoder.vit.parameters())
    assert vit and all(not p.requires_grad and p.grad is None for p in vit)
    trainable = {n for n, p in tok.named_parameters() if p.requires_grad}
    assert not any(n.startswith("semantic_encoder.model.") for n in trainable)


def test_commit_losses_train_the_codebooks():
    torch.manual_seed(0)
    tok = DualViTok(DualViTokConfig.from_name("tiny")).train()
    out = tok(images(1, 32, 32))
    (out.semantic_commit_loss + out.pixel_commit_loss).backward()
    assert tok.semantic_quantizer.code_transform.weight.grad.abs().sum() > 0
    assert tok.pixel_quantizer.code_transform.weight.grad.abs().sum() > 0


def test_vanilla_vq_variant_runs():
    torch.manual_seed(0)
    tok = DualViTok(DualViTokConfig.from_name("tiny", quantizer="vq")).eval()
    assert "pixel_quantizer.embedding.weight" in tok.state_dict()
    with torch.no_grad():
        enc = tok.encode(images(1, 32, 48))
        assert tok.decode(enc.semantic_ids, enc.pixel_ids).shape == (1, 3, 32, 48)


def test_save_load_round_trip(tmp_path, tok):
    tok.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == tok.config.to_dict()
    loaded = DualViTok.from_pretrained(tmp_path)
    assert loaded.config == tok.config
    ours, theirs = tok.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    x = images(1, 32, 32)
    with torch.no_grad():
        a, b = tok(x), loaded(x)
    assert torch.equal(a.reconstruction, b.reconstruction) and torch.equal(a.pixel_ids, b.pixel_ids)


ROUND_TRIP_SCRIPT = """
import tempfile, torch
from illume_plus import DualViTok, DualViTokConfig
torch.manual_seed(0)
tok = DualViTok(DualViTokConfig.from_name("tiny")).eval()
folder = tempfile.mkdtemp()
tok.save_pretrained(folder)
loaded = DualViTok.from_pretrained(folder)
x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
with torch.no_grad():
    print(torch.equal(tok(x).reconstruction, loaded(x).reconstruction))
"""


def test_save_load_round_trip_is_exact_where_mkl_depends_on_alignment():
    # MKL's SSE4.2 kernels take another path for weights that are not 64-byte aligned (as
    # safetensors hands them out): reconstructions differed by 8e-8 until loading aligned them.
    import os
    import subprocess
    import sys

    env = {**os.environ, "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", ROUND_TRIP_SCRIPT], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "True"


BAD_INPUTS = {
    "channels": (lambda: torch.zeros(1, 1, 32, 32), "channels"),
    "not multiple of 16": (lambda: torch.zeros(1, 3, 40, 32), "multiples of 16"),
    "NaN": (lambda: torch.full((1, 3, 32, 32), float("nan")), "NaN"),
    "out of range": (lambda: torch.full((1, 3, 32, 32), 1.5), r"\[-1, 1\]"),
    "[0, 255] image": (lambda: torch.full((1, 3, 32, 32), 255.0), r"\[-1, 1\]"),
    "3 dims": (lambda: torch.zeros(3, 32, 32), "4 dims"),
    "integers": (lambda: torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "floating point"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_raises_clear_error(tok, case):
    make, message = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        tok.encode(make())


def test_small_rounding_outside_range_is_accepted(tok):
    x = images(1, 32, 32).clamp(-1, 1)
    x[0, 0, 0, 0] = 1.0 + 1e-4
    with torch.no_grad():
        tok.encode(x)


def test_decode_rejects_out_of_range_ids(tok):
    with pytest.raises(ValueError, match="code indices"):
        tok.decode(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 4, 4), 10**6, dtype=torch.long))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "CMYK", "I;16"])
def test_pil_images_of_any_mode(tok, mode):
    image = Image.new("RGB", (45, 29), (10, 200, 30)).convert(mode)
    x = tok.preprocess(image)
    assert x.shape[:2] == (1, 3) and x.shape[2] % 16 == 0 and x.shape[3] % 16 == 0
    assert -1 <= x.min() and x.max() <= 1
    with torch.no_grad():
        tok.encode(x)


def test_preprocess_bounds_pixels_and_keeps_aspect():
    big = image_to_tensor(Image.new("RGB", (1600, 900)), max_pixels=512 * 512)
    h, w = big.shape[1:]
    assert h * w <= 512 * 512 and h % 16 == 0 and w % 16 == 0 and abs(w / h - 16 / 9) < 0.1
    tiny = image_to_tensor(Image.new("RGB", (8, 8)), min_pixels=32 * 32)
    assert tiny.shape[1] * tiny.shape[2] >= 32 * 32


def test_16_bit_greyscale_is_scaled_not_clipped():
    grey = Image.fromarray(np.full((32, 32), 128 * 257, dtype=np.uint16))  # 16-bit mid grey
    assert grey.mode.startswith("I;16")
    x = image_to_tensor(grey)
    assert torch.allclose(x, torch.full_like(x, 128 / 127.5 - 1), atol=1e-6)


def test_transparent_pixels_become_background():
    clear = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    assert torch.all(image_to_tensor(clear) == 1.0)  # white



def test_load_vit_weights_from_transformers_folder_and_prefixed_dict(tmp_path):
    torch.manual_seed(1)
    source = DualViTok(DualViTokConfig.from_name("tiny"))
    source.semantic_encoder.vit.save_pretrained(tmp_path)  # a bare vision tower saved by transformers
    tok = DualViTok(DualViTokConfig.from_name("tiny"))
    tok.load_vit_weights(tmp_path)
    expected = source.semantic_encoder.vit.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in tok.semantic_encoder.vit.state_dict().items())

    other = DualViTok(DualViTokConfig.from_name("tiny"))
    other.load_vit_weights({f"visual.{k}": v for k, v in expected.items()})  # as inside a Qwen2-VL checkpoint
    assert torch.equal(other.semantic_encoder.vit.merger.mlp[2].weight, expected["merger.mlp.2.weight"])
    with pytest.raises(ValueError, match="vision tower"):
        other.load_vit_weights({"lm_head.weight": torch.zeros(1)})
