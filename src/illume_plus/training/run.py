"""What the training recipes share around their step loop.

- `TrainSection`:       the `train:` config section (batch, steps, precision, checkpoints, logging)
- `RunProgress`:        where a run stands (step, epoch, batch, images seen, skipped images), saved
                        in every checkpoint; `resume_progress` restores it and the RNG states
- `training_batches`:   the batch stream of the step loop: epochs roll over, resumes mid-epoch,
                        stops on `max_steps` or the time limit, skips unreadable batches
- `save_checkpoint`, `prepare_output_dir`, `save_final`, `build_loader`, `autocast_settings`

Each recipe (tokenizer.py, decoder.py) stays one loop that reads top to bottom; these are the
pieces of that loop that do not depend on the model being trained.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader

from ..data import BucketBatchSampler, collate_images
from ..utils.io import atomic_path
from .checkpoint import (
    Checkpoint,
    CheckpointManager,
    capture_rng_state,
    restore_rng_state,
)
from .config import to_dict
from .distributed import DistributedContext, all_reduce_max, all_reduce_sum
from .ema import EMA

logger = logging.getLogger(__name__)


@dataclass
class TrainSection:
    output_dir: str = "runs/tokenizer"
    seed: int = 0
    batch_size: int = 32  # per process; the paper's global batch is 256
    max_steps: int = 1000
    max_minutes: float | None = None  # stop (with a checkpoint) after this much wall time
    grad_clip: float = 1.0  # 0 disables clipping
    mixed_precision: str = "auto"  # "auto" (bf16 on CUDA when supported) | "bf16" | "no"
    ema_decay: float | None = None  # e.g. 0.9999; None: no EMA
    init_from: str | None = None  # previous stage: a save_pretrained dir or a checkpoint step dir
    resume: bool = True  # continue from output_dir/checkpoints/latest when it exists
    checkpoint_every: int = 1000
    keep_last: int = 3
    log_every: int = 10
    num_workers: int = 0
    drop_last: bool = False  # keep partial batches (see BucketBatchSampler)
    device: str | None = None  # None: CUDA when available, else CPU
    progress_bar: bool = True


# ----------------------------------------------------------------------------- setup
def use_bf16(mode: str, device: torch.device) -> bool:
    if mode == "no":
        return False
    supported = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if mode == "bf16":
        if device.type == "cpu":
            return True  # CPU autocast supports bf16, if slowly: honour an explicit request
        if not supported:
            raise RuntimeError("mixed_precision=bf16 but this GPU does not support bf16")
        return True
    if mode == "auto":
        return supported
    raise ValueError(f"mixed_precision must be 'auto', 'bf16' or 'no', got {mode!r}")


def autocast_settings(mode: str, device: torch.device) -> dict:
    """Keyword arguments of `torch.autocast` for `train.mixed_precision`."""
    return {"device_type": device.type, "dtype": torch.bfloat16, "enabled": use_bf16(mode, device)}


def prepare_output_dir(output_dir: str | Path, config, is_main: bool, resume: bool = True) -> Path:
    """Create the run's folder and record the full config in it (`config.yaml`), on rank 0.

    With `resume=False` a folder that already holds a run (checkpoints, a metrics log or a final
    save) is refused on every rank: starting over there would mix two runs' checkpoints and logs.
    """
    output_dir = Path(output_dir)
    if not resume:
        found = existing_run_files(output_dir)
        if found:
            raise FileExistsError(f"train.resume=false but {output_dir} already holds a run ({', '.join(found)}); "
                                  f"choose a new train.output_dir, or delete that folder to start over in it")
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(output_dir / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    return output_dir


def existing_run_files(output_dir: str | Path) -> list[str]:
    """What in `output_dir` belongs to an earlier run: checkpoint folders, a non-empty metrics
    log, final saves (relative names; empty when the folder is new or empty)."""
    output_dir = Path(output_dir)
    found = []
    checkpoints = output_dir / "checkpoints"
    if checkpoints.is_dir():
        found += sorted(f"checkpoints/{p.name}" for p in checkpoints.iterdir() if p.is_dir())[-2:]
    metrics = output_dir / "metrics.jsonl"
    if metrics.is_file() and metrics.stat().st_size > 0:
        found.append("metrics.jsonl")
    found += [name for name in ("final", "final_ema") if (output_dir / name).exists()]
    return found


def build_loader(dataset, cfg: TrainSection, ctx: DistributedContext) -> DataLoader:
    """Batches of same-size images (grouped by `dataset.sample_sizes()`), this process's share."""
    sizes = dataset.sample_sizes()
    if all(size is None for size in sizes):
        raise ValueError(f"no readable image in {_describe_source(dataset)}: all {len(sizes)} files failed to open "
                         f"(see the warnings above) or were left out by the size rules")
    sampler = BucketBatchSampler(sizes, cfg.batch_size, seed=cfg.seed, shuffle=True,
                                 drop_last=cfg.drop_last, num_replicas=ctx.world_size, rank=ctx.rank)
    unreadable = getattr(dataset, "num_unreadable", 0)
    if unreadable and ctx.is_main:
        logger.warning("%d unreadable images left out of training (their headers failed)", unreadable)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_images, num_workers=cfg.num_workers,
                      pin_memory=ctx.device.type == "cuda",
                      # own generator: creating an iterator must not consume the global RNG (exact resume)
                      generator=torch.Generator().manual_seed(cfg.seed))


def seed_process(seed: int, rank: int, step: int = 0) -> None:
    """Per-process randomness (noise, perturbations...) from here on; the same weights came before."""
    torch.manual_seed(seed + 1000 * rank + step)


# ----------------------------------------------------------------------------- run bookkeeping
class RunProgress:
    """Where a run stands. Images are counted per process and summed over processes only when
    logging or checkpointing (`count_images`), so ranks may see batches of different sizes."""

    def __init__(self, device: torch.device):
        self.device = device
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0  # batches of `epoch` already consumed (skipped ones included)
        self.images_seen = 0  # every process's images, as of the last `count_images()`
        self.num_skipped = 0  # this process's unreadable images
        self.skipped_at_scan = 0  # images whose header failed when sizes were scanned (same on every rank)
        self.last_saved_step = -1  # step of the newest checkpoint; -1: none
        self._uncounted_images = 0  # this process's images not yet in `images_seen`

    def add_images(self, count: int) -> None:
        self._uncounted_images += count

    def count_images(self) -> int:
        """Collective: add every process's images since the last call to `images_seen`."""
        self.images_seen += int(all_reduce_sum(torch.tensor(self._uncounted_images, device=self.device)).item())
        self._uncounted_images = 0
        return self.images_seen

    def skipped_images(self) -> int:
        """Collective: unreadable images over all processes, those found when scanning the
        dataset's headers included."""
        return int(all_reduce_sum(torch.tensor(self.num_skipped, device=self.device)).item()) + self.skipped_at_scan

    @property
    def needs_checkpoint(self) -> bool:
        return self.last_saved_step != self.step


def save_checkpoint(checkpoints: CheckpointManager, progress: RunProgress, tensors: dict,
                    training_state: dict) -> Path:
    """Collective: checkpoint at `progress.step`, with the run's counters in the training state and
    each process's skip count next to its RNG states."""
    progress.count_images()
    path = checkpoints.save(progress.step, tensors, {
        **training_state,
        "epoch": progress.epoch, "batch_in_epoch": progress.batch_in_epoch, "images_seen": progress.images_seen,
    }, rank_state={**capture_rng_state(), "num_skipped": progress.num_skipped})
    progress.last_saved_step = progress.step
    return path


def resume_progress(checkpoint: Checkpoint, ctx: DistributedContext, seed: int) -> RunProgress:
    """The counters saved in `checkpoint`, and this process's RNG states restored from it."""
    state = checkpoint.training_state()
    progress = RunProgress(ctx.device)
    progress.step, progress.epoch, progress.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
    progress.images_seen = state["images_seen"]
    progress.last_saved_step = progress.step
    rank_state = checkpoint.rank_state()
    if rank_state is not None:
        restore_rng_state(rank_state)
        # older decoder checkpoints kept rank 0's count in the training state
        progress.num_skipped = rank_state.get("num_skipped", state.get("num_skipped", 0))
    else:  # the world size changed: the run continues, but not bit-for-bit
        logger.warning("checkpoint %s has no RNG state for rank %d; reseeding", checkpoint.path, ctx.rank)
        seed_process(seed, ctx.rank, progress.step)
    logger.info("resumed from %s at step %d", checkpoint.path, progress.step)
    return progress


# ----------------------------------------------------------------------------- the batch stream
def training_batches(loader: DataLoader, progress: RunProgress, max_steps: int,
                     max_minutes: float | None = None) -> Iterator[torch.Tensor]:
    """This process's image batches (on `progress.device`), epoch after epoch from where `progress`
    stands, until the caller's `progress.step` reaches `max_steps` or `max_minutes` have passed.

    Stopping and skipping are collective decisions, so every process runs the same steps: stop
    when any process is out of time; skip a step when any process's batch was entirely
    unreadable. Advances `progress.epoch`, `batch_in_epoch` and `num_skipped`; not `step`.
    A whole epoch without one usable batch (no readable image) raises ValueError naming the
    data source, instead of looping over unreadable files forever.
    """
    sampler, dataset = loader.batch_sampler, loader.dataset
    deadline = None if max_minutes is None else time.perf_counter() + 60 * max_minutes
    while progress.step < max_steps:
        if sampler.batches_per_epoch() == 0:
            raise ValueError(f"no readable image in {_describe_source(dataset)}: every file failed to open "
                             f"(see the warnings above) or was left out by the size rules")
        if progress.batch_in_epoch >= sampler.batches_per_epoch():
            progress.epoch, progress.batch_in_epoch = progress.epoch + 1, 0
        dataset.set_epoch(progress.epoch)
        sampler.set_epoch(progress.epoch, start_batch=progress.batch_in_epoch)
        whole_epoch, used = progress.batch_in_epoch == 0, 0
        for batch in loader:
            images = batch["images"]
            out_of_time = deadline is not None and time.perf_counter() > deadline
            flags = all_reduce_max(torch.tensor([out_of_time, images is None], dtype=torch.float32,
                                                device=progress.device))
            if flags[0] > 0:
                return
            progress.batch_in_epoch += 1
            progress.num_skipped += batch["num_skipped"]
            if flags[1] > 0:
                continue
            used += 1
            yield images.to(progress.device, non_blocking=True)
            if progress.step >= max_steps:
                return  # before fetching a batch that would not be used
        if whole_epoch and used == 0:
            raise ValueError(f"no readable image in a whole epoch of {_describe_source(dataset)} "
                             f"({progress.num_skipped} unreadable; see the warnings above)")


def _describe_source(dataset) -> str:
    describe = getattr(dataset, "describe_source", None)
    return describe() if describe is not None else type(dataset).__name__


# ----------------------------------------------------------------------------- end of run
def save_final(output_dir: Path, save_pretrained: Callable[[Path], None], ema: EMA | None = None,
               ema_module: torch.nn.Module | None = None) -> Path:
    """`final/` and, with EMA, `final_ema/` (EMA weights swapped into `ema_module` for the save)."""
    final_dir = Path(output_dir) / "final"
    save_pretrained(final_dir)
    if ema is not None:
        with ema.average_parameters(ema_module):
            save_pretrained(Path(output_dir) / "final_ema")
    return final_dir
