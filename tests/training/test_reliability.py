"""Training under faults: unreadable data, a reused run folder, damaged checkpoints, torn logs.
Each test is one failure seen in practice; the recipes run on the tiny preset with 16x16 images."""

import json
import logging
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from illume_plus.data import ImageDataConfig, build_dataset
from illume_plus.training.checkpoint import CheckpointManager
from illume_plus.training.config import load_config
from illume_plus.training.decoder import DecoderTrainingConfig
from illume_plus.training.decoder import main as decoder_main
from illume_plus.training.distributed import DistributedContext
from illume_plus.training.logging import MetricsLogger, read_metrics
from illume_plus.training.run import RunProgress, TrainSection, build_loader, training_batches
from illume_plus.training.tokenizer import TokenizerTrainingConfig, train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SMALL = ["data.num_images=4", "data.size=16", "data.source_sizes=[[16, 16]]", "train.batch_size=2",
         "train.checkpoint_every=1", "train.keep_last=10", "train.log_every=1", "train.progress_bar=false"]


def tiny_config(output_dir, *extra):
    return load_config(TokenizerTrainingConfig, CONFIGS / "tokenizer" / "tiny_cpu.yaml",
                       [*SMALL, f"train.output_dir={output_dir}", *extra])


def run(output_dir, *extra):
    with pytest.warns(UserWarning, match="LPIPS"):  # no perceptual weights here: the term is off, loudly
        return train(tiny_config(output_dir, *extra))


@contextmanager
def hang_guard(seconds=120):
    """Fail instead of hanging CI if the code under test loops forever."""
    def fail(*_):
        raise TimeoutError(f"still running after {seconds} s: the loop never ends")
    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def steps_logged(output_dir):
    return [m["step"] for m in read_metrics(Path(output_dir) / "metrics.jsonl") if "total_loss" in m]


# ----------------------------------------------------------------------------- unreadable data
@pytest.mark.parametrize("resize", ["fixed", "anyres"])  # anyres reads headers first, fixed only when decoding
def test_a_folder_without_one_readable_image_stops_naming_the_folder(tmp_path, resize):
    folder = tmp_path / "broken_images"
    folder.mkdir()
    for i in range(3):
        (folder / f"img{i}.png").write_bytes(b"not a png at all")
    dataset = build_dataset(ImageDataConfig(source="folder", path=str(folder), size=16, resize=resize))
    ctx = DistributedContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    with hang_guard(), pytest.raises(ValueError, match="no readable image.*broken_images"):
        loader = build_loader(dataset, TrainSection(batch_size=2), ctx)
        next(iter(training_batches(loader, RunProgress(torch.device("cpu")), max_steps=10)))


# ----------------------------------------------------------------------------- run folders
def test_starting_over_into_a_folder_that_holds_a_run_is_refused(tmp_path):
    run(tmp_path, "train.max_steps=1")
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    log_before = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(FileExistsError, match=r"train.resume=false but .* already holds a run"):
        train(tiny_config(tmp_path, "train.max_steps=1", "train.resume=false"))  # refused before any work
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before
    assert (tmp_path / "metrics.jsonl").read_text() == log_before
    run(tmp_path / "fresh", "train.max_steps=1", "train.resume=false")  # a new folder is fine


def test_recipe_configs_write_under_the_working_directory():
    for path in sorted(CONFIGS.glob("*/*.yaml")):
        section = yaml.safe_load(path.read_text())["train"]
        assert not Path(section["output_dir"]).is_absolute(), path
        assert not Path(section.get("init_from") or ".").is_absolute(), path


# ----------------------------------------------------------------------------- damaged checkpoints
def save_steps(directory, steps):
    manager = CheckpointManager(directory, keep_last=10)
    for step in steps:
        manager.save(step, {"model": {"w": torch.full((64,), float(step))}}, {"note": step})
    return manager


@pytest.mark.parametrize("damage", ["truncated_safetensors", "truncated_state", "missing_state"])
def test_a_damaged_checkpoint_is_named_and_the_newest_intact_one_used(tmp_path, caplog, damage):
    manager = save_steps(tmp_path, [1, 2, 3])
    step3 = tmp_path / "step_00000003"
    victim = {"truncated_safetensors": step3 / "model.safetensors",
              "truncated_state": step3 / "training_state.pt", "missing_state": step3 / "training_state.pt"}[damage]
    if damage == "missing_state":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        latest = manager.latest()
    assert latest.step == 2 and float(latest.tensors("model")["w"][0]) == 2.0
    assert str(victim.name) in caplog.text and "step_00000003" in caplog.text


@pytest.mark.parametrize("pointer", [b"", b"\xff\xfe\x00garbage\x80", b"step_00000009\n", b"../../etc\n"])
def test_an_empty_binary_or_wrong_latest_file_falls_back_to_the_newest_step(tmp_path, caplog, pointer):
    manager = save_steps(tmp_path, [1, 2])
    (tmp_path / "latest").write_bytes(pointer)
    with caplog.at_level(logging.WARNING):
        assert manager.latest().step == 2
    assert "latest" in caplog.text


def test_no_intact_checkpoint_at_all_is_an_error_naming_the_file(tmp_path):
    manager = save_steps(tmp_path, [1])
    (tmp_path / "step_00000001" / "model.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(ValueError, match="no intact checkpoint.*model.safetensors"):
        manager.latest()


def test_a_run_resumes_past_damaged_checkpoints_and_sets_the_newer_ones_aside(tmp_path):
    run(tmp_path, "train.max_steps=3")
    checkpoints = tmp_path / "checkpoints"
    for step, name in ((2, "training_state.pt"), (3, "model.safetensors")):
        damaged = checkpoints / f"step_{step:08d}" / name
        damaged.write_bytes(damaged.read_bytes()[:100])
    run(tmp_path, "train.max_steps=2")  # resumes from step 1 and saves a new step 2
    assert CheckpointManager(checkpoints).latest().step == 2
    # the damaged step 3 must not outrank the new step 2 (nor be pruned in its place)
    assert (checkpoints / "abandoned_step_00000003" / "model.safetensors").stat().st_size == 100
    assert not (checkpoints / "step_00000003").exists()
    run(tmp_path, "train.max_steps=3")
    assert CheckpointManager(checkpoints).latest().step == 3
    assert steps_logged(tmp_path) == [1, 2, 3]  # each step once


# ----------------------------------------------------------------------------- metrics log
def test_a_torn_last_line_is_skipped_and_the_log_cut_to_the_resumed_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": s / 10}) + "\n" for s in (1, 2, 3)) + '{"step": 4, "lo')
    assert [m["step"] for m in read_metrics(path)] == [1, 2, 3]
    MetricsLogger(path).start(2)
    assert [m["step"] for m in read_metrics(path)] == [1, 2]
    MetricsLogger(path).start(None)  # a fresh start keeps nothing
    assert read_metrics(path) == []
    path.write_text('{"step": 1}\n{"ste\n{"step": 3}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2"):
        read_metrics(path)  # damage in the middle is not a torn last line


def test_a_run_killed_before_its_first_checkpoint_logs_no_step_twice(tmp_path):
    # what such a run leaves: a log with steps past any checkpoint (none) and a torn line
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "total_loss": 9.0}\n{"step": 2, "total_l')
    run(tmp_path, "train.max_steps=2")
    assert steps_logged(tmp_path) == [1, 2]
    assert all(m["total_loss"] != 9.0 for m in read_metrics(tmp_path / "metrics.jsonl"))


# ----------------------------------------------------------------------------- skipped images
def test_decoder_recipe_counts_images_whose_header_failed(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"ok{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG but not really")
    decoder_main([str(CONFIGS / "decoder" / "tiny_cpu.yaml"), f"train.output_dir={tmp_path / 'run'}",
                  "data.source=folder", f"data.path={folder}", "buckets.sizes=[[64, 64]]", "train.batch_size=2",
                  "train.max_steps=1", "eval.every=0", "train.progress_bar=false", "train.log_every=1"])
    assert read_metrics(tmp_path / "run" / "metrics.jsonl")[-1]["skipped_images"] == 1
    assert isinstance(load_config(DecoderTrainingConfig, CONFIGS / "decoder" / "tiny_cpu.yaml"), DecoderTrainingConfig)
