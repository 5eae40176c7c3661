"""Training losses of DualViTok: LPIPS-VGG16, PatchGAN, and the combined tokenizer objective."""

from .discriminator import (
    DiscriminatorConfig,
    NLayerDiscriminator,
    adaptive_gan_weight,
    generator_adversarial_loss,
    hinge_discriminator_loss,
)
from .perceptual import LPIPS, build_perceptual_loss
from .tokenizer_loss import TokenizerLoss, TokenizerLossConfig, semantic_cosine_loss

__all__ = [
    "DiscriminatorConfig",
    "LPIPS",
    "NLayerDiscriminator",
    "TokenizerLoss",
    "TokenizerLossConfig",
    "adaptive_gan_weight",
    "build_perceptual_loss",
    "generator_adversarial_loss",
    "hinge_discriminator_loss",
    "semantic_cosine_loss",
]
