"""PatchGAN discriminator and the GAN losses of the tokenizer (VQGAN recipe).

Layout: the pix2pix / taming-transformers `NLayerDiscriminator` with its default BatchNorm
(taming's `use_actnorm=False`): 4x4 convs, stride 2 for the first `n_layers` convs, then a
stride-1 conv and a stride-1 conv to one logit per patch; LeakyReLU(0.2); no norm on the first
conv; convs followed by BatchNorm have no bias. With 3 layers a 256x256 image gives 30x30
logits (70x70 receptive field). Module names (`main.N.*`) follow that layout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

KERNEL_SIZE = 4
LEAKY_SLOPE = 0.2


@dataclass
class DiscriminatorConfig:
    in_channels: int = 3
    ndf: int = 64  # width of the first conv; doubles per layer up to 8x
    n_layers: int = 3
    init_std: float = 0.02  # N(0, init_std) conv weights, N(1, init_std) BatchNorm scales

    def to_dict(self) -> dict:
        return asdict(self)


class NLayerDiscriminator(nn.Module):
    def __init__(self, config: DiscriminatorConfig | None = None):
        super().__init__()
        self.config = config = config or DiscriminatorConfig()
        if config.n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {config.n_layers}")
        ndf = config.ndf
        layers: list[nn.Module] = [
            nn.Conv2d(config.in_channels, ndf, KERNEL_SIZE, stride=2, padding=1),
            nn.LeakyReLU(LEAKY_SLOPE),
        ]
        mult = 1
        for n in range(1, config.n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < config.n_layers else 1  # the last hidden conv keeps the resolution
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, KERNEL_SIZE, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(LEAKY_SLOPE),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, KERNEL_SIZE, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, std)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, 1, h, w) patch logits."""
        return self.main(images)


def hinge_discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """0.5 * (E[relu(1 - D(x))] + E[relu(1 + D(G(z)))])."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def generator_adversarial_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Hinge generator loss: -E[D(G(z))]."""
    return -logits_fake.mean()


def adaptive_gan_weight(
    reconstruction_loss: torch.Tensor,
    gan_loss: torch.Tensor,
    last_layer: torch.Tensor,
    max_weight: float = 1e4,
    eps: float = 1e-4,
) -> torch.Tensor:
    """VQGAN's balance: |grad rec| / (|grad gan| + eps) at `last_layer` (the decoder's final
    weight), clamped to [0, max_weight] and detached. Multiply by the configured GAN weight."""
    rec_grad = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (gan_grad.norm() + eps)
    return weight.clamp(0.0, max_weight).detach()
