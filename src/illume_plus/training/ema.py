"""Exponential moving average of a model's trainable parameters."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class EMA:
    """shadow = decay * shadow + (1 - decay) * param, for every parameter with requires_grad.

    Frozen parameters and buffers are not averaged (they do not change); `state_dict` holds
    only the averaged tensors under the model's own names, so it loads into a model with
    `strict=False` or through `copy_to`.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.shadow = {name: p.detach().clone().float()
                       for name, p in _unwrap(model).named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        params = dict(_unwrap(model).named_parameters())
        for name, shadow in self.shadow.items():
            shadow.lerp_(params[name].detach().float(), 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        params = dict(_unwrap(model).named_parameters())
        for name, shadow in self.shadow.items():
            params[name].copy_(shadow.to(params[name].dtype))

    @contextmanager
    def average_parameters(self, model: nn.Module):
        """Temporarily load the averaged weights into `model` (e.g. to evaluate), then restore."""
        params = dict(_unwrap(model).named_parameters())
        backup = {name: params[name].detach().clone() for name in self.shadow}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, value in backup.items():
                    params[name].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = set(self.shadow) - set(state), set(state) - set(self.shadow)
        if missing or unexpected:
            raise KeyError(f"EMA state mismatch: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
        for name, value in state.items():
            self.shadow[name].copy_(value)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DistributedDataParallel keeps the model in .module
