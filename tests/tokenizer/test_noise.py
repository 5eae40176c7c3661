"""Noise injection on the pixel codes (SPEC §2, robust decoding), as the authors' `apply_noise`:
alpha of the samples are perturbed; in those, each position is replaced with probability beta by
the previous sample's code (detached) or by zeros."""

import pytest
import torch

from illume_plus import DualViTok, DualViTokConfig
from illume_plus.tokenizer.fusion import inject_code_noise


def labelled_codes(b, h=8, w=10, d=4):
    """Sample i holds the value i + 1 everywhere, so a replaced value tells where it came from."""
    return (torch.arange(b, dtype=torch.float32) + 1).view(b, 1, 1, 1).expand(b, d, h, w).clone()


@pytest.mark.parametrize("token_rate", [0.1, 0.5])
def test_each_position_is_replaced_with_probability_beta(token_rate):
    codes = labelled_codes(4, h=64, w=64)
    noisy = inject_code_noise(codes, 1.0, token_rate, "zero", generator=torch.Generator().manual_seed(0))
    replaced = (noisy == 0).all(dim=1)  # (B, h, w): every channel of a position is replaced together
    assert ((noisy == 0).any(dim=1) == replaced).all()
    fractions = replaced.flatten(1).float().mean(1)
    assert ((fractions - token_rate).abs() < 0.03).all()  # 4096 positions: 3 sigma < 0.025
    kept = ~replaced[:, None].expand_as(noisy)
    assert torch.equal(noisy[kept], codes[kept])


def test_random_noise_takes_the_previous_samples_code_detached():
    b = 4
    codes = labelled_codes(b).requires_grad_(True)
    noisy = inject_code_noise(codes, 1.0, 0.5, "random", generator=torch.Generator().manual_seed(1))
    own = torch.arange(1, b + 1, dtype=torch.float32).view(b, 1, 1)
    previous = torch.tensor([b, 1, 2, 3], dtype=torch.float32).view(b, 1, 1)  # sample 0 takes the last one's
    value = noisy[:, 0].detach()
    replaced = value != own
    assert replaced.any() and (~replaced).any()
    assert torch.equal(value[replaced], previous.expand_as(value)[replaced])
    assert (noisy == noisy[:, :1]).all()  # whole code vectors are moved
    noisy.sum().backward()  # the donor is detached: replaced positions send no gradient anywhere
    assert torch.equal(codes.grad[:, 0], (~replaced).float())


def test_batch_rate_selects_about_alpha_of_the_samples():
    codes = labelled_codes(2000, h=4, w=5)
    noisy = inject_code_noise(codes, 0.1, 0.5, "zero", generator=torch.Generator().manual_seed(2))
    perturbed = (noisy == 0).flatten(1).any(1).float().mean().item()
    assert 0.08 < perturbed < 0.12


def test_no_noise_when_a_rate_is_zero_and_a_single_sample_is_its_own_donor():
    codes = labelled_codes(2)
    assert torch.equal(inject_code_noise(codes, 0.0, 0.5, "zero"), codes)
    assert torch.equal(inject_code_noise(codes, 1.0, 0.0, "zero"), codes)
    assert torch.equal(inject_code_noise(codes[:1], 1.0, 0.5, "random"), codes[:1])


def test_unknown_noise_type_is_refused():
    with pytest.raises(ValueError, match="noise_type"):
        inject_code_noise(labelled_codes(2), 1.0, 0.5, "gaussian")


def test_model_injects_noise_in_training_only():
    torch.manual_seed(0)
    tok = DualViTok(DualViTokConfig.from_name("tiny", noise_batch_rate=1.0, noise_token_rate=1.0, noise_type="zero"))
    semantic = torch.randn(1, 32, 1, 1)
    pixel = torch.randn(1, 32, 2, 2)
    with torch.no_grad():
        tok.train()
        noisy = tok.decode_codes(semantic, pixel)
        tok.eval()
        clean = tok.decode_codes(semantic, pixel)
        zeroed = tok.decode_codes(semantic, torch.zeros_like(pixel))
    # The pixel decoder has no dropout or batch statistics: train and eval differ only by the noise.
    assert torch.allclose(noisy, zeroed, atol=1e-6)
    assert not torch.allclose(noisy, clean, atol=1e-3)
