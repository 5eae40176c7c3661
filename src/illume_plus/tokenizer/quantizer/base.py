"""What every quantizer returns, and the parts they share."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .search import nearest_code


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # (B, D, h, w) straight-through codes: forward = code, backward = identity
    indices: torch.Tensor  # (B, h, w) int64
    loss: torch.Tensor  # scalar commitment + codebook loss


class VectorQuantizer(nn.Module):
    """Channel-first vector quantizer over a codebook that subclasses define via `codebook()`."""

    def __init__(self, codebook_size: int, dim: int, commitment_weight: float = 0.25, search_block_size: int = 32768,
                 loss_weight: float = 1.0, rotation_trick: bool = False):
        super().__init__()
        self.codebook_size = codebook_size
        self.dim = dim
        self.commitment_weight = commitment_weight
        self.loss_weight = loss_weight
        self.rotation_trick = rotation_trick
        self.search_block_size = search_block_size

    def codebook(self) -> torch.Tensor:  # (K, D)
        raise NotImplementedError

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        if z.dim() != 4 or z.shape[1] != self.dim:
            raise ValueError(f"expected features (B, {self.dim}, h, w), got {tuple(z.shape)}")
        with torch.autocast(device_type=z.device.type, enabled=False):
            x = z.float()
            b, d, h, w = x.shape
            flat = x.permute(0, 2, 3, 1).reshape(-1, d)
            codebook = self.codebook().float()
            indices = nearest_code(flat.detach(), codebook.detach(), self.search_block_size)
            q = F.embedding(indices, codebook)
            # Codebook term pulls codes to features, commitment term pulls features to codes.
            loss = F.mse_loss(flat.detach(), q) + self.commitment_weight * F.mse_loss(flat, q.detach())
            loss = self.loss_weight * loss
            q = rotate_to(flat, q) if self.rotation_trick else (q - flat).detach() + flat  # straight-through
            q = q.view(b, h, w, d).permute(0, 3, 1, 2).contiguous()
        return QuantizerOutput(quantized=q.to(z.dtype), indices=indices.view(b, h, w), loss=loss)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes for an index grid (B, h, w) -> (B, D, h, w), fp32."""
        if indices.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"code indices must be integers, got {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise ValueError(f"code indices must lie in [0, {self.codebook_size}), got "
                             f"[{int(indices.min())}, {int(indices.max())}]")
        codes = F.embedding(indices.long(), self.codebook().float())
        return codes.permute(0, 3, 1, 2).contiguous()


def rotate_to(x: torch.Tensor, q: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The rotation trick (Fifty et al. 2024): the value of `q`, reached from `x` (N, D) by a
    rotation and a rescaling that are treated as constants, so gradients reach `x` rotated rather
    than copied. R = I - 2 r r^T + 2 q_hat x_hat^T with r = (x_hat + q_hat) / |x_hat + q_hat|."""
    x_norm = x.norm(dim=-1, keepdim=True).clamp_min(eps)
    q_norm = q.norm(dim=-1, keepdim=True).clamp_min(eps)
    x_hat, q_hat = (x / x_norm).detach(), (q / q_norm).detach()
    r = F.normalize(x_hat + q_hat, dim=-1, eps=eps).detach()
    rotated = x - 2 * (x * r).sum(-1, keepdim=True) * r + 2 * (x * x_hat).sum(-1, keepdim=True) * q_hat
    return rotated * (q_norm / x_norm).detach()
