import pytest
import torch

from illume_plus.losses import (
    DiscriminatorConfig,
    NLayerDiscriminator,
    adaptive_gan_weight,
    generator_adversarial_loss,
    hinge_discriminator_loss,
)


def test_patchgan_layout_and_patch_grid():
    d = NLayerDiscriminator(DiscriminatorConfig())
    shapes = {k: tuple(v.shape) for k, v in d.state_dict().items()}
    # taming-transformers layout: conv | conv-BN x3 (no conv bias before BN) | conv to 1 logit.
    assert shapes["main.0.weight"] == (64, 3, 4, 4) and "main.0.bias" in shapes
    assert shapes["main.2.weight"] == (128, 64, 4, 4) and "main.2.bias" not in shapes
    assert shapes["main.5.weight"] == (256, 128, 4, 4)
    assert shapes["main.8.weight"] == (512, 256, 4, 4)
    assert shapes["main.9.running_var"] == (512,)
    assert shapes["main.11.weight"] == (1, 512, 4, 4) and "main.11.bias" in shapes
    with torch.no_grad():
        logits = d(torch.randn(1, 3, 256, 256))
    assert logits.shape == (1, 1, 30, 30)  # the classic 70x70 PatchGAN grid at 256


def test_weights_initialised_from_normal_0_02():
    d = NLayerDiscriminator(DiscriminatorConfig())
    conv = d.main[8].weight  # 512*256*16 entries
    assert abs(conv.std().item() - 0.02) < 5e-4 and abs(conv.mean().item()) < 5e-4
    bn = d.main[9]
    assert abs(bn.weight.mean().item() - 1.0) < 0.01 and torch.equal(bn.bias, torch.zeros(512))


def test_hinge_losses_on_constructed_logits():
    confident_real, confident_fake = torch.full((2, 1, 3, 3), 2.0), torch.full((2, 1, 3, 3), -2.0)
    assert hinge_discriminator_loss(confident_real, confident_fake).item() == 0.0
    zeros = torch.zeros(2, 1, 3, 3)
    assert hinge_discriminator_loss(zeros, zeros).item() == 1.0  # 0.5 * (1 + 1)
    # One real patch at 0.5 (margin 0.5), the rest beyond the margin: 0.5 * 0.5 / 4.
    real = torch.tensor([0.5, 3.0, 3.0, 3.0]).view(1, 1, 2, 2)
    assert hinge_discriminator_loss(real, -real.abs() - 1).item() == pytest.approx(0.0625)
    assert generator_adversarial_loss(torch.tensor([1.0, 3.0])).item() == -2.0


def test_adaptive_weight_is_gradient_norm_ratio_clamped():
    last_layer = torch.ones(3, requires_grad=True)
    a, b = torch.tensor([3.0, 4.0, 0.0]), torch.tensor([0.0, 0.0, 2.0])
    weight = adaptive_gan_weight((last_layer * a).sum(), (last_layer * b).sum(), last_layer)
    assert weight.item() == pytest.approx(5.0 / (2.0 + 1e-4))
    assert not weight.requires_grad
    tiny = adaptive_gan_weight((last_layer * a).sum(), (last_layer * b * 1e-9).sum(), last_layer, max_weight=100.0)
    assert tiny.item() == 100.0
