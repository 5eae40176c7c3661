import math

import pytest
import torch

from illume_plus.training.optim import OptimizerConfig, build_optimizer, build_scheduler, lr_multiplier


def test_weight_decay_is_applied_to_matrices_only():
    model = torch.nn.Linear(3, 3)
    with torch.no_grad():
        model.weight.fill_(1.0), model.bias.fill_(1.0)
    optimizer = build_optimizer(model, OptimizerConfig(lr=0.1, weight_decay=0.5))
    model.weight.grad = torch.zeros_like(model.weight)
    model.bias.grad = torch.zeros_like(model.bias)
    optimizer.step()
    assert torch.allclose(model.weight, torch.full((3, 3), 1.0 - 0.1 * 0.5))  # decoupled decay: w -= lr*wd*w
    assert torch.equal(model.bias, torch.ones(3))


def test_betas_and_lr_reach_the_optimizer():
    optimizer = build_optimizer(torch.nn.Linear(2, 2), OptimizerConfig(lr=3e-4, betas=[0.9, 0.95]))
    group = optimizer.param_groups[0]
    assert group["lr"] == 3e-4 and group["betas"] == (0.9, 0.95)


def test_each_schedule_drives_only_its_own_optimizer():
    gen = build_optimizer(torch.nn.Linear(2, 2), OptimizerConfig(lr=1.0))
    disc = build_optimizer(torch.nn.Linear(2, 2), OptimizerConfig(lr=1.0))
    disc_config = OptimizerConfig(lr=1.0, warmup_steps=4)
    build_scheduler(gen, OptimizerConfig(lr=1.0), total_steps=10)
    build_scheduler(disc, disc_config, total_steps=10)
    assert [g["lr"] for g in gen.param_groups] == [1.0, 1.0]
    assert [g["lr"] for g in disc.param_groups] == [0.25, 0.25]


def test_warmup_then_cosine_values():
    config = OptimizerConfig(schedule="cosine", warmup_steps=2, min_lr_ratio=0.1)
    assert lr_multiplier(0, config, 12) == 0.5
    assert lr_multiplier(2, config, 12) == pytest.approx(1.0)
    assert lr_multiplier(7, config, 12) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_multiplier(12, config, 12) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="schedule"):
        build_scheduler(build_optimizer(torch.nn.Linear(1, 1), OptimizerConfig()), OptimizerConfig(schedule="step"), 5)
