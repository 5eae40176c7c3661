import os

import pytest
import torch

from illume_plus.utils.io import atomic_path, load_json, load_safetensors, save_json, save_safetensors


def test_atomic_path_leaves_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "ckpt.json"
    save_json({"step": 1}, target)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"step": 2')  # half-written, then the process "dies"
            raise RuntimeError("killed")
    assert load_json(target) == {"step": 1}
    assert os.listdir(tmp_path) == ["ckpt.json"]  # no temp file left behind


def test_safetensors_round_trip_with_tied_tensors(tmp_path):
    w = torch.randn(4, 3)
    state = {"a.weight": w, "b.weight": w, "c": torch.arange(5)}  # tied weights share storage
    save_safetensors(state, tmp_path / "m.safetensors")
    back = load_safetensors(tmp_path / "m.safetensors")
    assert set(back) == set(state)
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_missing_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_safetensors(tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_json(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="bad.json"):
        load_json(bad)


def test_loaded_tensors_start_on_64_byte_boundaries(tmp_path):
    # safetensors places tensors at file offsets; MKL's results depend on alignment on some CPUs
    state = {f"t{i}": torch.randn(3 + i, 5) for i in range(6)}
    save_safetensors(state, tmp_path / "m.safetensors")
    back = load_safetensors(tmp_path / "m.safetensors")
    assert all(v.data_ptr() % 64 == 0 for v in back.values())
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_damaged_weight_and_checkpoint_files_are_named(tmp_path):
    from illume_plus.utils.io import check_safetensors, check_torch_checkpoint, torch_load_checkpoint

    save_safetensors({"w": torch.randn(100)}, tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-40])
    with pytest.raises(ValueError, match="cut.safetensors.*truncated"):
        check_safetensors(tmp_path / "cut.safetensors")
    with pytest.raises(ValueError, match="cut.safetensors"):
        load_safetensors(tmp_path / "cut.safetensors")
    torch.save({"step": 3, "w": torch.randn(100)}, tmp_path / "s.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "s.pt").read_bytes()[:200])
    with pytest.raises(ValueError, match="cut.pt"):
        check_torch_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(ValueError, match="cut.pt"):
        torch_load_checkpoint(tmp_path / "cut.pt")
    check_safetensors(tmp_path / "m.safetensors")  # intact files pass
    check_torch_checkpoint(tmp_path / "s.pt")
