"""Per-step scalars averaged over a logging window, across processes."""

from __future__ import annotations

import time

import torch

from .distributed import all_reduce_sum, get_world_size


class WindowedMetrics:
    """Accumulates each step's scalars until `summary()` turns them into one log line.

    A key is averaged over the steps where it was present (GAN terms exist only from
    `disc_start`, say), then over processes. `summary()` is collective: every process calls it
    at the same step, and every process must have seen the same keys.
    """

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.steps = 0
        self.images = 0  # this process's images in the window
        self.start = time.perf_counter()

    def add(self, values: dict, images: int) -> None:
        """One step: its scalars (floats or one-element tensors) and this process's image count."""
        for key, value in values.items():
            value = value.item() if isinstance(value, torch.Tensor) else value
            self.sums[key] = self.sums.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1
        self.steps += 1
        self.images += images

    def __len__(self) -> int:
        """Steps since the last summary."""
        return self.steps

    def summary(self) -> dict:
        """Collective: {key: mean over its steps and over processes, images_per_second: all
        processes' images over the window's wall time}; then starts a new window."""
        elapsed = time.perf_counter() - self.start
        names = sorted(self.sums)
        means = all_reduce_sum(torch.tensor([self.sums[k] / self.counts[k] for k in names],
                                            dtype=torch.float64, device=self.device)) / get_world_size()
        images = all_reduce_sum(torch.tensor(self.images, device=self.device)).item()
        record = dict(zip(names, means.tolist()))
        record["images_per_second"] = images / max(elapsed, 1e-9)
        self._reset()
        return record
