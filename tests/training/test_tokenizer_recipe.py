"""The DualViTok recipe end to end on the tiny preset: exact resume, the discriminator's start step,
and two-process DDP. Images are 16x16 and batches hold 2, to keep each step short on a busy CPU."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from illume_plus.training.checkpoint import CheckpointManager
from illume_plus.training.config import load_config
from illume_plus.training.logging import read_metrics
from illume_plus.training.tokenizer import TokenizerTrainingConfig, train
from illume_plus.utils.io import load_safetensors

TINY_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tokenizer" / "tiny_cpu.yaml"
# 4 images rendered at two sizes, batch 2: 2 batches per epoch, so 3 steps cross an epoch boundary.
# Flips, noise injection, EMA and both optimisers are all on: each is a way for resume to diverge.
SMALL = ["data.num_images=4", "data.size=16", "data.source_sizes=[[16, 16], [24, 20]]", "train.batch_size=2",
         "train.max_steps=3", "train.checkpoint_every=1", "train.keep_last=10", "train.log_every=1",
         "loss.disc_start=1", "train.ema_decay=0.9", "train.progress_bar=false", "model.overrides.noise_batch_rate=0.5"]
LAST = 3


def run(output_dir, *extra):
    config = load_config(TokenizerTrainingConfig, TINY_CONFIG, [*SMALL, f"train.output_dir={output_dir}", *extra])
    with pytest.warns(UserWarning, match="LPIPS"):  # no perceptual weights here: the term is off, loudly
        return train(config)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("uninterrupted")
    run(output_dir)
    return output_dir


def checkpoint_tensors(output_dir, step):
    path = Path(output_dir) / "checkpoints" / f"step_{step:08d}"
    return {name: load_safetensors(path / f"{name}.safetensors") for name in ("model", "discriminator", "ema")}


@pytest.mark.parametrize("stop_after", [1, 2])  # mid-epoch, and exactly at the end of an epoch
def test_resumed_run_matches_uninterrupted_run_bitwise(full_run, tmp_path, stop_after):
    # Simulate a run killed after `stop_after` steps: only its checkpoints up to there exist.
    source = full_run / "checkpoints" / f"step_{stop_after:08d}"
    shutil.copytree(source, tmp_path / "checkpoints" / source.name)
    (tmp_path / "checkpoints" / "latest").write_text(source.name + "\n")
    run(tmp_path)

    expected, resumed = checkpoint_tensors(full_run, LAST), checkpoint_tensors(tmp_path, LAST)
    for name in expected:
        assert expected[name].keys() == resumed[name].keys()
        for key in expected[name]:
            assert torch.equal(expected[name][key], resumed[name][key]), f"{name}.{key} differs after resume"
    state_a = CheckpointManager(full_run / "checkpoints").latest().training_state()
    state_b = CheckpointManager(tmp_path / "checkpoints").latest().training_state()
    for key in ("epoch", "batch_in_epoch", "images_seen"):
        assert state_a[key] == state_b[key]
    exp_avg = lambda s: s["discriminator_optimizer"]["state"][0]["exp_avg"]  # noqa: E731
    assert torch.equal(exp_avg(state_a), exp_avg(state_b))
    # the resumed run logs the steps it ran, once each
    assert [m["step"] for m in read_metrics(tmp_path / "metrics.jsonl")] == list(range(stop_after + 1, LAST + 1))


def test_discriminator_trains_from_disc_start_only(full_run):
    metrics = {m["step"]: m for m in read_metrics(full_run / "metrics.jsonl")}
    assert sorted(metrics) == [1, 2, 3]
    # step 1 runs index 0 < disc_start = 1: no GAN term, no discriminator update
    assert "discriminator_loss" not in metrics[1] and "gan_loss" not in metrics[1]
    assert "discriminator_loss" in metrics[2] and "gan_loss" in metrics[2]
    states = {step: CheckpointManager(full_run / "checkpoints").checkpoints()[step - 1] for step in (1, 2)}
    from illume_plus.training.checkpoint import Checkpoint

    def disc_optimizer_state(step):
        return Checkpoint(states[step]).training_state()["discriminator_optimizer"]["state"]

    assert disc_optimizer_state(1) == {} and len(disc_optimizer_state(2)) > 0
    assert len(Checkpoint(states[1]).training_state()["generator_optimizer"]["state"]) > 0
    disc = {step: checkpoint_tensors(full_run, step)["discriminator"] for step in (2, 3)}
    assert not all(torch.equal(disc[2][k], disc[3][k]) for k in disc[2])


def test_run_writes_config_log_and_a_loadable_final_model(full_run):
    from illume_plus import DualViTok

    assert (full_run / "config.yaml").is_file()
    final = DualViTok.from_pretrained(full_run / "final")
    assert final.config.semantic_codebook_size == 256
    last = read_metrics(full_run / "metrics.jsonl")[-1]
    assert last["images_seen"] == 6 and last["skipped_images"] == 0
    assert 0 < last["pixel_codebook_usage"] <= 1
    assert [p.name for p in CheckpointManager(full_run / "checkpoints").checkpoints()][-1] == "step_00000003"


DDP_SCRIPT = """
import os, sys, torch
from illume_plus.training.config import load_config
from illume_plus.training.tokenizer import TokenizerTrainingConfig, train
config = load_config(TokenizerTrainingConfig, sys.argv[1], sys.argv[3:])
model = train(config)
torch.save({k: v for k, v in model.state_dict().items()}, os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.pt"))
"""


@pytest.mark.slow
def test_two_process_ddp_keeps_parameters_identical(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    overrides = [*SMALL, "train.max_steps=2", "train.checkpoint_every=100",
                 f"train.output_dir={tmp_path / 'run'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), str(TINY_CONFIG), str(tmp_path), *overrides],
        env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), f"{key} differs across ranks"
    metrics = read_metrics(tmp_path / "run" / "metrics.jsonl")
    # 4 images over 2 ranks: one batch of 2 per rank and epoch; both ranks' images are counted
    assert metrics[-1]["step"] == 2 and metrics[-1]["images_seen"] == 2 * 2 * 2
    assert "discriminator_loss" in metrics[-1]
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text().strip() == "step_00000002"


def test_time_limit_stops_cleanly_with_a_checkpoint(tmp_path):
    run(tmp_path, "train.max_minutes=0")  # out of time before the first step
    assert CheckpointManager(tmp_path / "checkpoints").latest().step == 0
    assert (tmp_path / "final" / "model.safetensors").is_file()
    assert not (tmp_path / "metrics.jsonl").exists()
