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

    def __init__(self, codebook_size: int, dim: int, commitment_weight: float = 0.25, search_block_size: int = 32768):
        super().__init__()
        self.codebook_size = codebook_size
        self.dim = dim
        self.commitment_weight = commitment_weight
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
            q = (q - flat).detach() + flat  # straight-through estimator
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
