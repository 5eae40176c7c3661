"""Noise injection on the pixel codes (SPEC §2, robust decoding): alpha of the samples, beta of their tokens."""

import pytest
import torch

from illume_plus import DualViTok, DualViTokConfig
from illume_plus.tokenizer.fusion import inject_code_noise


def labelled_codes(b, h=8, w=10, d=4):
    """Sample i holds the value i + 1 everywhere, so a replaced value tells where it came from."""
    return (torch.arange(b, dtype=torch.float32) + 1).view(b, 1, 1, 1).expand(b, d, h, w).clone()


@pytest.mark.parametrize("token_rate,expected", [(0.1, 8), (0.25, 20), (1.0, 80)])
def test_zero_noise_replaces_the_expected_fraction(token_rate, expected):
    codes = labelled_codes(3)
    noisy = inject_code_noise(codes, 1.0, token_rate, "zero", generator=torch.Generator().manual_seed(0))
    replaced = (noisy == 0).all(dim=1)  # (B, h, w): every channel of a position is replaced together
    assert replaced.flatten(1).sum(1).tolist() == [expected] * 3
    assert torch.equal(noisy[~replaced[:, None].expand_as(noisy)], codes[~replaced[:, None].expand_as(codes)])


def test_random_noise_takes_codes_of_another_sample():
    b = 4
    codes = labelled_codes(b)
    noisy = inject_code_noise(codes, 1.0, 0.5, "random", generator=torch.Generator().manual_seed(1))
    own = torch.arange(1, b + 1, dtype=torch.float32).view(b, 1, 1)
    value = noisy[:, 0]
    replaced = value != own
    assert replaced.flatten(1).sum(1).tolist() == [40] * b
    assert torch.isin(value[replaced], own.flatten()).all()  # a code of the batch, at the same (h, w)
    assert (noisy == noisy[:, :1]).all()  # whole code vectors are moved


def test_batch_rate_selects_about_alpha_of_the_samples():
    codes = labelled_codes(2000, h=2, w=5)
    noisy = inject_code_noise(codes, 0.1, 0.1, "zero", generator=torch.Generator().manual_seed(2))
    perturbed = (noisy == 0).flatten(1).any(1).float().mean().item()
    assert 0.08 < perturbed < 0.12


def test_no_noise_when_rates_are_zero_or_batch_of_one():
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
