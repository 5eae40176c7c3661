"""Nearest-code search that never holds more than one block of distances in memory."""

from __future__ import annotations

import torch


def nearest_code(x: torch.Tensor, codebook: torch.Tensor, block_size: int = 32768) -> torch.Tensor:
    """Index of the nearest codebook row (Euclidean) for each row of `x`.

    x: (N, D), codebook: (K, D). The distance matrix is built `block_size` codebook rows at a
    time, so a 98,304-code search costs N x block_size floats at most. Computed in fp32.
    """
    x = x.float()
    codebook = codebook.float()
    x_sq = x.pow(2).sum(dim=1, keepdim=True)
    best_dist = best_idx = None
    for start in range(0, codebook.shape[0], block_size):
        block = codebook[start:start + block_size]
        dist = x_sq - 2 * x @ block.t() + block.pow(2).sum(dim=1)[None]
        dist_min, idx = dist.min(dim=1)
        idx = idx + start
        if best_dist is None:
            best_dist, best_idx = dist_min, idx
        else:
            closer = dist_min < best_dist  # ties keep the earlier block, as a single argmin would
            best_dist = torch.where(closer, dist_min, best_dist)
            best_idx = torch.where(closer, idx, best_idx)
    return best_idx


def nearest_code_bruteforce(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Reference search over the whole codebook at once (for tests and tiny codebooks)."""
    return torch.cdist(x.float()[None], codebook.float()[None])[0].argmin(dim=1)
