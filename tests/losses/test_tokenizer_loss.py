import warnings
from types import SimpleNamespace

import pytest
import torch

from illume_plus.losses import DiscriminatorConfig, TokenizerLoss, TokenizerLossConfig, semantic_cosine_loss

TINY_D = DiscriminatorConfig(ndf=8, n_layers=2)
LEAVES = ("reconstruction", "semantic_target", "semantic_reconstruction", "semantic_commit_loss", "pixel_commit_loss")


def squared_distance(x, y):  # stands in for LPIPS: (B,) distances, differentiable in both
    return (x - y).square().mean(dim=(1, 2, 3))


def make_out():
    return SimpleNamespace(
        reconstruction=(torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(),
        semantic_target=torch.randn(2, 16, 2, 2).requires_grad_(),
        semantic_reconstruction=torch.randn(2, 16, 2, 2).requires_grad_(),
        semantic_commit_loss=torch.tensor(0.3, requires_grad=True),
        pixel_commit_loss=torch.tensor(0.7, requires_grad=True),
    )


def only(term: str, **extra) -> TokenizerLossConfig:
    weights = dict(reconstruction_weight=0.0, perceptual_weight=0.0, gan_weight=0.0, semantic_cosine_weight=0.0,
                   semantic_commit_weight=0.0, pixel_commit_weight=0.0)
    weights[term] = 1.0
    return TokenizerLossConfig(discriminator=TINY_D, disc_start=10, **{**weights, **extra})


def grads_reached(out) -> set[str]:
    return {name for name in LEAVES
            if getattr(out, name).grad is not None and getattr(out, name).grad.abs().sum() > 0}


@pytest.mark.parametrize("term, reached", [
    ("reconstruction_weight", {"reconstruction"}),
    ("perceptual_weight", {"reconstruction"}),
    ("semantic_cosine_weight", {"semantic_reconstruction"}),
    ("semantic_commit_weight", {"semantic_commit_loss"}),
    ("pixel_commit_weight", {"pixel_commit_loss"}),
    ("gan_weight", {"reconstruction"}),
])
def test_each_term_reaches_only_its_tensors(term, reached):
    loss_fn = TokenizerLoss(only(term), perceptual=squared_distance)
    images, out = torch.rand(2, 3, 32, 32) * 2 - 1, make_out()
    loss, logs = loss_fn.generator_loss(images, out, step=10)
    loss.backward()
    assert grads_reached(out) == reached
    assert all(p.grad is None for p in loss_fn.discriminator.parameters())  # G step leaves D alone
    assert logs["total_loss"] == pytest.approx(loss.item())


@pytest.mark.parametrize("kind, expected", [("mse", 0.25), ("l1", 0.5)])
def test_reconstruction_kind_switches_mse_l1(kind, expected):
    loss_fn = TokenizerLoss(only("reconstruction_weight", reconstruction=kind))
    out = make_out()
    out.reconstruction = torch.full((2, 3, 32, 32), 0.5)
    loss, logs = loss_fn.generator_loss(torch.zeros(2, 3, 32, 32), out, step=0)
    assert loss.item() == pytest.approx(expected)
    assert logs["reconstruction_loss"] == pytest.approx(expected)


def test_saturated_pixel_weight_counts_colourful_pixels_and_their_surround_more():
    """Grey image with one red pixel at (8, 8): the error sits either 2 pixels away from it (inside
    the grown mask: weight 1 + w) or 10 pixels away (outside: weight 1); normalised by the mean weight."""
    images = torch.zeros(1, 3, 32, 32)
    images[0, :, 8, 8] = torch.tensor([1.0, -1.0, -1.0])
    w = 20.0
    loss_fn = TokenizerLoss(only("reconstruction_weight", reconstruction="l1", saturated_pixel_weight=w))
    mean_weight = 1 + w * 25 / 1024  # the 5x5 grown mask
    for (y, x), pixel_weight in (((10, 8), 1 + w), ((20, 20), 1.0)):
        out = make_out()
        out.reconstruction = images.clone()
        out.reconstruction[0, 0, y, x] += 0.5
        loss, _ = loss_fn.generator_loss(images, out, step=0)
        assert loss.item() == pytest.approx(0.5 * pixel_weight / (3 * 1024) / mean_weight, rel=1e-5)


def test_semantic_cosine_loss_on_constructed_directions():
    target = torch.randn(2, 8, 3, 3)
    assert semantic_cosine_loss(3.0 * target, target).item() == pytest.approx(0.0, abs=1e-6)
    assert semantic_cosine_loss(-target, target).item() == pytest.approx(2.0)
    a, b = torch.zeros(1, 2, 1, 1), torch.zeros(1, 2, 1, 1)
    a[0, 0], b[0, 1] = 1.0, 5.0
    assert semantic_cosine_loss(a, b).item() == pytest.approx(1.0)


def test_gan_term_is_zero_before_disc_start_and_on_after():
    cfg = TokenizerLossConfig(discriminator=TINY_D, disc_start=100, perceptual_weight=0.0)
    loss_fn = TokenizerLoss(cfg)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    out = make_out()
    before, logs_before = loss_fn.generator_loss(images, out, step=99)
    after, logs_after = loss_fn.generator_loss(images, out, step=100)
    assert "gan_loss" not in logs_before and not loss_fn.gan_active(99) and loss_fn.gan_active(100)
    assert logs_after["gan_weight"] == 0.5
    assert after.item() == pytest.approx(before.item() + 0.5 * logs_after["gan_loss"], rel=1e-5)
    assert logs_after["gan_loss"] != 0.0


def test_discriminator_loss_trains_only_the_discriminator():
    loss_fn = TokenizerLoss(TokenizerLossConfig(discriminator=TINY_D, disc_start=5, perceptual_weight=0.0))
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    reconstruction = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_()
    zero, logs = loss_fn.discriminator_loss(images, reconstruction, step=4)
    assert zero.item() == 0.0 and not zero.requires_grad and logs == {"discriminator_loss": 0.0}
    loss, logs = loss_fn.discriminator_loss(images, reconstruction, step=5)
    loss.backward()
    assert reconstruction.grad is None
    assert all(p.grad is not None for p in loss_fn.discriminator.parameters())
    assert loss.item() > 0
    assert set(logs) == {"discriminator_loss", "discriminator_hinge_loss", "logits_real", "logits_fake"}


def test_discriminator_loss_is_the_hinge_loss_scaled_by_the_gan_weight():
    """The release's DualViTokLoss: d_adversarial_loss = disc_weight * hinge_d_loss (disc_weight 0.5)."""
    loss_fn = TokenizerLoss(TokenizerLossConfig(discriminator=TINY_D, disc_start=0, perceptual_weight=0.0,
                                                gan_weight=0.5))
    loss_fn.discriminator.eval()  # fixed BatchNorm statistics: the two calls see the same logits
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    reconstruction = torch.rand(2, 3, 32, 32) * 2 - 1
    loss, logs = loss_fn.discriminator_loss(images, reconstruction, step=0)
    with torch.no_grad():
        real, fake = loss_fn.discriminator(images), loss_fn.discriminator(reconstruction)
    hinge = 0.5 * (torch.relu(1 - real).mean() + torch.relu(1 + fake).mean())  # their hinge_d_loss
    assert loss.item() == pytest.approx(0.5 * hinge.item(), rel=1e-5)
    assert logs["discriminator_hinge_loss"] == pytest.approx(hinge.item(), rel=1e-5)


def test_adaptive_weight_balances_gradients_at_last_layer():
    cfg = only("reconstruction_weight", gan_weight=0.5, adaptive_gan_weight=True)
    loss_fn = TokenizerLoss(cfg)
    images, out = torch.zeros(2, 3, 32, 32), make_out()
    c = 0.25
    out.reconstruction = torch.full((2, 3, 32, 32), c, requires_grad=True)
    with pytest.raises(ValueError, match="last_layer"):
        loss_fn.generator_loss(images, out, step=10)
    _, logs = loss_fn.generator_loss(images, out, step=10, last_layer=out.reconstruction)
    # d mse / d rec = 2c/N everywhere, norm 2c/sqrt(N); the GAN gradient measured separately.
    n = out.reconstruction.numel()
    gan_grad = torch.autograd.grad(-loss_fn.discriminator(out.reconstruction).mean(), out.reconstruction)[0]
    expected = 0.5 * (2 * c / n ** 0.5) / (gan_grad.norm().item() + 1e-4)
    assert logs["gan_weight"] == pytest.approx(expected, rel=1e-4)


def test_config_validation_and_warning():
    with pytest.raises(ValueError, match="reconstruction"):
        TokenizerLossConfig(reconstruction="l2")
    with pytest.raises(ValueError, match="disc_strat"):
        TokenizerLossConfig.from_dict({"disc_strat": 3})
    cfg = TokenizerLossConfig.from_dict({"gan_weight": 0.1, "discriminator": {"ndf": 16}})
    assert cfg.discriminator.ndf == 16 and cfg.discriminator.n_layers == 3
    assert TokenizerLossConfig.from_dict(cfg.to_dict()) == cfg
    assert not TokenizerLoss(only("reconstruction_weight")).gan_active(10**6)  # gan_weight 0: no D training
    with pytest.warns(UserWarning, match="OFF"):
        TokenizerLoss(TokenizerLossConfig(discriminator=TINY_D))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TokenizerLoss(TokenizerLossConfig(discriminator=TINY_D, perceptual_weight=0.0))
