"""Optimiser and learning-rate schedule construction from plain config values."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


@dataclass
class OptimizerConfig:
    lr: float = 1e-4
    betas: list = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.0  # decoupled (AdamW); never on biases and norm weights
    schedule: str = "constant"  # "constant" | "cosine" (linear warmup, then cosine to min_lr_ratio * lr)
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0


def build_optimizer(module: nn.Module, config: OptimizerConfig) -> torch.optim.Optimizer:
    """Adam over the trainable parameters of `module`; with weight_decay > 0 it is applied
    (decoupled, as AdamW) to matrices and kernels only. AdamW with weight decay 0 is Adam."""
    decay, no_decay = [], []
    for param in module.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    if not decay and not no_decay:
        raise ValueError(f"{type(module).__name__} has no trainable parameters")
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, betas=tuple(config.betas),
                             eps=config.eps, weight_decay=config.weight_decay)


def lr_multiplier(step: int, config: OptimizerConfig, total_steps: int) -> float:
    """Factor on the base LR at optimiser step `step` (0-based)."""
    if config.warmup_steps > 0 and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "cosine":
        span = max(1, total_steps - config.warmup_steps)
        progress = min(1.0, (step - config.warmup_steps) / span)
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"unknown LR schedule {config.schedule!r}; choose 'constant' or 'cosine'")


def build_scheduler(optimizer: torch.optim.Optimizer, config: OptimizerConfig, total_steps: int) -> LambdaLR:
    lr_multiplier(0, config, total_steps)  # validate the schedule name now, not at step 1
    return LambdaLR(optimizer, lambda step: lr_multiplier(step, config, total_steps))
