"""The DualViTok training objective (SPEC section 2, "Training").

generator loss = w_rec * reconstruction (MSE or L1) + w_lpips * LPIPS
               + gan weight * hinge generator loss              (from `disc_start` on)
               + w_cos * semantic cosine loss + w_sc * semantic commit + w_pc * pixel commit
discriminator loss = gan weight * hinge loss on real images vs detached reconstructions
                     (from `disc_start` on; the release scales it by its disc_weight, 0.5, too)

Before `disc_start` (or with gan_weight 0) neither GAN term runs the discriminator: both are
zero, and `gan_active(step)` tells the trainer to skip the discriminator's optimiser step.
The LPIPS network is a frozen submodule: give the discriminator's optimiser
`loss.discriminator.parameters()` and checkpoint `loss.discriminator.state_dict()`.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..utils.config import check_known_fields
from .discriminator import (
    DiscriminatorConfig,
    NLayerDiscriminator,
    adaptive_gan_weight,
    generator_adversarial_loss,
    hinge_discriminator_loss,
)

RECONSTRUCTION_LOSSES = {"mse": F.mse_loss, "l1": F.l1_loss}


def saturated_pixel_mask(images: torch.Tensor, threshold: float = 0.3, grow: int = 2) -> torch.Tensor:
    """(B, 1, H, W) 1.0 where a pixel is colourful (max - min channel > threshold, [-1, 1] scale)
    or within `grow` pixels of one, else 0.0."""
    colourful = (images.amax(1, keepdim=True) - images.amin(1, keepdim=True)) > threshold
    return F.max_pool2d(colourful.float(), 2 * grow + 1, stride=1, padding=grow)


def weighted_reconstruction_loss(kind: str, reconstruction: torch.Tensor, images: torch.Tensor,
                                 weight: float) -> torch.Tensor:
    """The reconstruction loss with pixels of `saturated_pixel_mask` weighted 1 + weight,
    normalised by the mean weight (the scale of the plain loss when nothing is saturated)."""
    per_pixel = (reconstruction - images).abs() if kind == "l1" else (reconstruction - images).square()
    weights = 1.0 + weight * saturated_pixel_mask(images)
    return (per_pixel * weights).mean() / weights.mean()


@dataclass
class TokenizerLossConfig:
    reconstruction: str = "mse"  # the release uses MSE, the paper text says L1
    reconstruction_weight: float = 1.0
    # Extra weight on colourful pixels and their 2-pixel surround (per-pixel max - min channel
    # > 0.3 on [-1, 1]): 0 (off) everywhere but the shape world, whose objects are its only
    # saturated pixels and cover ~5% of an image; without it the pixel codes learn background
    # first and objects far later (docs/world.md).
    saturated_pixel_weight: float = 0.0
    perceptual_weight: float = 1.0
    gan_weight: float = 0.5
    disc_start: int = 20000  # first step with the GAN terms
    adaptive_gan_weight: bool = False  # VQGAN's gradient-norm balance (the release: off)
    adaptive_gan_weight_max: float = 1e4
    semantic_cosine_weight: float = 1.0
    semantic_cosine_margin: float = 1e-4
    semantic_commit_weight: float = 1.0
    pixel_commit_weight: float = 1.0
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)

    def __post_init__(self):
        if isinstance(self.discriminator, dict):
            self.discriminator = DiscriminatorConfig(**self.discriminator)
        if self.reconstruction not in RECONSTRUCTION_LOSSES:
            raise ValueError(f"reconstruction must be one of {sorted(RECONSTRUCTION_LOSSES)}, got {self.reconstruction!r}")
        if self.disc_start < 0:
            raise ValueError(f"disc_start must be >= 0, got {self.disc_start}")

    @classmethod
    def from_dict(cls, values: dict) -> "TokenizerLossConfig":
        check_known_fields(cls, values)
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


class TokenizerLoss(nn.Module):
    """Owns the discriminator; `perceptual` is a frozen callable (x, y) -> (B,) distances
    (`LPIPS`), or None to train without the perceptual term."""

    def __init__(self, config: TokenizerLossConfig | None = None, perceptual: Callable | None = None):
        super().__init__()
        self.config = config = config or TokenizerLossConfig()
        if perceptual is None and config.perceptual_weight > 0:
            warnings.warn(f"perceptual_weight={config.perceptual_weight} but no perceptual network was given: "
                          "the LPIPS term is OFF", stacklevel=2)
        self.perceptual = perceptual
        self.discriminator = NLayerDiscriminator(config.discriminator)

    def gan_active(self, step: int) -> bool:
        """Whether the GAN terms (and the discriminator's training) are on at `step`."""
        return self.config.gan_weight > 0 and step >= self.config.disc_start

    def generator_loss(self, images: torch.Tensor, out, step: int,
                       last_layer: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss for the tokenizer's optimiser.

        images: (B, 3, H, W) targets in [-1, 1]; out: DualViTok output (reconstruction,
        semantic_target, semantic_reconstruction, semantic_commit_loss, pixel_commit_loss);
        last_layer: the pixel decoder's final weight, needed only with `adaptive_gan_weight`.
        The discriminator is applied with detached parameters: this loss leaves its grads alone.
        """
        cfg = self.config
        reconstruction = out.reconstruction
        if reconstruction.shape != images.shape:
            raise ValueError(f"reconstruction {tuple(reconstruction.shape)} and images {tuple(images.shape)} differ in shape")
        terms: dict[str, torch.Tensor] = {}

        terms["reconstruction_loss"] = RECONSTRUCTION_LOSSES[cfg.reconstruction](reconstruction.float(), images.float())
        if cfg.saturated_pixel_weight > 0:
            terms["reconstruction_loss"] = weighted_reconstruction_loss(
                cfg.reconstruction, reconstruction.float(), images.float(), cfg.saturated_pixel_weight)
        pixel_loss = cfg.reconstruction_weight * terms["reconstruction_loss"]
        if self.perceptual is not None and cfg.perceptual_weight > 0:
            terms["perceptual_loss"] = self.perceptual(images, reconstruction).mean()
            pixel_loss = pixel_loss + cfg.perceptual_weight * terms["perceptual_loss"]

        terms["semantic_cosine_loss"] = semantic_cosine_loss(out.semantic_reconstruction, out.semantic_target,
                                                             cfg.semantic_cosine_margin)
        terms["semantic_commit_loss"] = out.semantic_commit_loss.float()
        terms["pixel_commit_loss"] = out.pixel_commit_loss.float()
        total = (pixel_loss
                 + cfg.semantic_cosine_weight * terms["semantic_cosine_loss"]
                 + cfg.semantic_commit_weight * terms["semantic_commit_loss"]
                 + cfg.pixel_commit_weight * terms["pixel_commit_loss"])

        if self.gan_active(step):
            terms["gan_loss"] = generator_adversarial_loss(self._logits_without_param_grads(reconstruction)).float()
            terms["gan_weight"] = self._gan_weight(pixel_loss, terms["gan_loss"], last_layer)
            total = total + terms["gan_weight"] * terms["gan_loss"]
        terms["total_loss"] = total
        return total, _to_floats(terms)

    def discriminator_loss(self, images: torch.Tensor, reconstruction: torch.Tensor,
                           step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """`gan_weight` x hinge loss for the discriminator's optimiser (the authors' DualViTokLoss
        scales the discriminator's loss by the same disc_weight as the generator's GAN term);
        never backpropagates into the generator. Zero (with no graph) before `disc_start`: skip
        the optimiser step then (`gan_active`)."""
        if not self.gan_active(step):
            zero = images.new_zeros((), dtype=torch.float32)
            return zero, {"discriminator_loss": 0.0}
        logits_real = self.discriminator(images.detach())
        logits_fake = self.discriminator(reconstruction.detach())
        hinge = hinge_discriminator_loss(logits_real.float(), logits_fake.float())
        loss = self.config.gan_weight * hinge
        logs = {"discriminator_loss": loss, "discriminator_hinge_loss": hinge, "logits_real": logits_real.mean(),
                "logits_fake": logits_fake.mean()}
        return loss, _to_floats(logs)

    def _logits_without_param_grads(self, reconstruction: torch.Tensor) -> torch.Tensor:
        # Gradients reach the reconstruction only; BatchNorm statistics still update as in VQGAN.
        discriminator = getattr(self.discriminator, "module", self.discriminator)  # unwrap DDP
        params = {name: p.detach() for name, p in discriminator.named_parameters()}
        return functional_call(discriminator, params, (reconstruction,))

    def _gan_weight(self, pixel_loss: torch.Tensor, gan_loss: torch.Tensor,
                    last_layer: torch.Tensor | None) -> torch.Tensor:
        cfg = self.config
        if not cfg.adaptive_gan_weight or not torch.is_grad_enabled():
            # Under no_grad (validation) there is no gradient to balance: use the plain weight.
            return gan_loss.new_tensor(cfg.gan_weight)
        if last_layer is None:
            raise ValueError("adaptive_gan_weight needs `last_layer` (the decoder's final conv weight)")
        return cfg.gan_weight * adaptive_gan_weight(pixel_loss, gan_loss, last_layer, cfg.adaptive_gan_weight_max)


def semantic_cosine_loss(reconstruction: torch.Tensor, target: torch.Tensor, margin: float = 1e-4) -> torch.Tensor:
    """Cosine-embedding loss (all pairs positive) between l2-normalised tokens of (B, C, h, w)
    maps: mean over tokens of 1 - cos. The target is the frozen ViT's: no gradient to it.
    (`margin` only acts on negative pairs, of which there are none; kept as the release has it.)"""
    if reconstruction.shape != target.shape or reconstruction.dim() != 4:
        raise ValueError(f"semantic reconstruction {tuple(reconstruction.shape)} and target "
                         f"{tuple(target.shape)} must both be (B, C, h, w)")
    channels = reconstruction.shape[1]
    rec = F.normalize(reconstruction.float().movedim(1, -1).reshape(-1, channels), dim=-1)
    tgt = F.normalize(target.detach().float().movedim(1, -1).reshape(-1, channels), dim=-1)
    positive = rec.new_ones(rec.shape[0])
    return F.cosine_embedding_loss(rec, tgt, positive, margin=margin)


def _to_floats(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    # One host sync for all logged values.
    values = torch.stack([t.detach().float().reshape(()) for t in terms.values()]).tolist()
    return dict(zip(terms, values))
