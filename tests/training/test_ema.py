import pytest
import torch

from illume_plus.training.ema import EMA


def test_update_follows_the_formula_and_skips_frozen_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model[1].requires_grad_(False)
    ema = EMA(model, decay=0.9)
    assert set(ema.state_dict()) == {"0.weight", "0.bias"}
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.state_dict()["0.weight"], 0.9 * start + 0.1 * (start + 1.0))


def test_average_parameters_swaps_in_and_restores():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.5)
    trained = model.weight.detach().clone() + 4.0
    with torch.no_grad():
        model.weight.copy_(trained)
    ema.update(model)
    with ema.average_parameters(model):
        assert torch.allclose(model.weight, trained - 2.0)
    assert torch.equal(model.weight, trained)


def test_bad_decay_and_mismatched_state_are_refused():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError):
        EMA(model, decay=1.0)
    with pytest.raises(KeyError):
        EMA(model, 0.9).load_state_dict({"weight": torch.zeros(2, 2)})
