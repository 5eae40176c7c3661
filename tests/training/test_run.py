"""The recipes' shared loop pieces: window averages, image counting across processes, the batch stream."""

import pytest
import torch

from illume_plus.data import ImageDataConfig, build_dataset
from illume_plus.training import run as run_module
from illume_plus.training.distributed import DistributedContext
from illume_plus.training.metrics import WindowedMetrics
from illume_plus.training.run import (
    RunProgress,
    TrainSection,
    build_loader,
    training_batches,
)


def test_window_averages_each_key_over_the_steps_it_was_logged():
    window = WindowedMetrics()
    window.add({"loss": 1.0}, images=2)  # before disc_start: no GAN term
    window.add({"loss": 3.0, "gan_loss": 4.0}, images=2)
    window.add({"loss": torch.tensor(5.0), "gan_loss": 6.0}, images=1)
    assert len(window) == 3
    record = window.summary()
    assert record["loss"] == pytest.approx(3.0)
    assert record["gan_loss"] == pytest.approx(5.0)  # (4 + 6) / 2, not / 3
    assert record["images_per_second"] > 0
    assert len(window) == 0
    window.add({"loss": 7.0}, images=1)
    assert set(window.summary()) == {"loss", "images_per_second"}  # a new window forgets old keys


def test_images_seen_sums_each_process_own_count_when_synced(monkeypatch):
    # Stand in for a second process that saw 5 images since the last sync (ranks' batches differ).
    monkeypatch.setattr(run_module, "all_reduce_sum", lambda tensor: tensor + 5)
    progress = RunProgress(torch.device("cpu"))
    progress.add_images(2)
    progress.add_images(1)
    assert progress.count_images() == 3 + 5
    progress.add_images(4)
    assert progress.count_images() == 8 + 4 + 5  # only images since the previous sync are added


def tiny_loader(num_images=3, batch_size=2):
    dataset = build_dataset(ImageDataConfig(num_images=num_images, size=16))
    ctx = DistributedContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    return build_loader(dataset, TrainSection(batch_size=batch_size, seed=0), ctx)


def stream(progress, max_steps, **kwargs):
    batches = []
    for images in training_batches(tiny_loader(), progress, max_steps, **kwargs):
        batches.append(images)
        progress.step += 1  # the caller counts steps
    return batches


def test_batch_stream_rolls_over_epochs_and_stops_at_max_steps():
    progress = RunProgress(torch.device("cpu"))
    sizes = [images.shape[0] for images in stream(progress, max_steps=3)]  # 3 images: batches of 2 and 1
    assert sorted(sizes[:2]) == [1, 2] and len(sizes) == 3
    assert (progress.epoch, progress.batch_in_epoch) == (1, 1)


def test_batch_stream_resumes_mid_epoch_and_honours_the_time_limit():
    uninterrupted = stream(RunProgress(torch.device("cpu")), max_steps=3)
    progress = RunProgress(torch.device("cpu"))
    progress.step, progress.batch_in_epoch = 1, 1  # as restored from a step-1 checkpoint
    resumed = stream(progress, max_steps=3)
    assert len(resumed) == 2 and all(torch.equal(a, b) for a, b in zip(resumed, uninterrupted[1:]))
    assert stream(RunProgress(torch.device("cpu")), max_steps=5, max_minutes=0) == []
