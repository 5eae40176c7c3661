"""Vanilla VQ (van den Oord et al. 2017): a learned codebook. The baseline of the paper's Table 8."""

from __future__ import annotations

from torch import nn

from .base import VectorQuantizer


class VanillaVQ(VectorQuantizer):
    def __init__(self, codebook_size: int, dim: int = 32, **kwargs):
        super().__init__(codebook_size, dim, **kwargs)
        self.embedding = nn.Embedding(codebook_size, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)

    def codebook(self):
        return self.embedding.weight
