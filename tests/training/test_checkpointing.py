import random

import numpy as np
import pytest
import torch

from illume_plus.training.checkpoint import Checkpoint, CheckpointManager, capture_rng_state, restore_rng_state


def _state(value):
    return {"weight": torch.full((2, 3), float(value)), "bias": torch.arange(3.0)}


def test_save_then_load_round_trips_everything(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    path = manager.save(7, {"model": model.state_dict(), "ema": _state(1)},
                        {"optimizer": optimizer.state_dict(), "epoch": 2, "batch_in_epoch": 5})
    assert path.name == "step_00000007" and (tmp_path / "latest").read_text().strip() == path.name

    latest = manager.latest()
    assert latest.step == 7
    for key, value in model.state_dict().items():
        assert torch.equal(latest.tensors("model")[key], value)
    state = latest.training_state()
    assert state["epoch"] == 2 and state["batch_in_epoch"] == 5 and state["step"] == 7
    fresh = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=1e-3)
    fresh.load_state_dict(state["optimizer"])
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert latest.rank_state() is not None and latest.rank_state(rank=1) is None


def test_keeps_only_the_last_n_and_ignores_half_written_ones(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step in (1, 2, 3):
        manager.save(step, {"model": _state(step)}, {})
    assert [p.name for p in manager.checkpoints()] == ["step_00000002", "step_00000003"]
    (tmp_path / ".staging_step_00000004").mkdir()  # a crash while writing step 4
    assert manager.latest().step == 3
    assert float(manager.latest().tensors("model")["weight"][0, 0]) == 3.0


def test_latest_falls_back_to_the_newest_directory(tmp_path):
    manager = CheckpointManager(tmp_path)
    assert manager.latest() is None
    manager.save(5, {"model": _state(5)}, {})
    (tmp_path / "latest").write_text("step_00000099\n")  # points at something deleted by hand
    assert manager.latest().step == 5
    with pytest.raises(FileNotFoundError):
        Checkpoint(tmp_path / "missing")


def test_rng_states_restore_exactly(tmp_path):
    manager = CheckpointManager(tmp_path)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    manager.save(1, {}, {})
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng_state(manager.latest().rank_state())
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])
    assert set(capture_rng_state()) >= {"python", "numpy", "torch"}
