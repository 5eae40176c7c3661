"""DualViTok training recipe (SPEC section 2, "Training").

    illume-plus train tokenizer configs/tokenizer/stage1_256.yaml train.output_dir=runs/s1
    torchrun --nproc_per_node 8 -m illume_plus.training.tokenizer configs/tokenizer/stage1_256.yaml

One step:
  1. generator: DualViTok forward, `TokenizerLoss.generator_loss` (reconstruction + LPIPS +
     semantic cosine + both commit losses + hinge GAN term from `disc_start`), backward
     (DDP averages the gradients), clip to `grad_clip`, Adam step, its LR schedule, EMA;
  2. discriminator (from `disc_start` only): hinge loss on real vs detached reconstruction,
     backward, gradients averaged across processes, clip, its own optimiser and its OWN schedule.

Progressive training = three configs, each starting from the previous stage's weights
(`train.init_from`): fixed 256² -> fixed 512² -> any resolution up to 512² (batches grouped by size).

A run writes into `train.output_dir`: `config.yaml`, `metrics.jsonl`, `checkpoints/` (resumable:
rerunning the same command continues from `checkpoints/latest`, exactly) and, at the end,
`final/` (and `final_ema/` with EMA) in `DualViTok.save_pretrained` format.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ..data import BucketBatchSampler, ImageDataConfig, build_dataset, collate_images
from ..losses import TokenizerLoss, TokenizerLossConfig, build_perceptual_loss
from ..tokenizer.config import DualViTokConfig
from ..tokenizer.model import DualViTok
from ..utils.io import atomic_path
from .checkpoint import Checkpoint, CheckpointManager, capture_rng_state, restore_rng_state
from .config import load_config, to_dict
from .distributed import (
    DistributedContext,
    all_reduce_max,
    all_reduce_sum,
    average_gradients,
    broadcast_buffers,
    cleanup_distributed,
    init_distributed,
)
from .ema import EMA
from .logging import MetricsLogger, ProgressBar
from .optim import OptimizerConfig, build_optimizer, build_scheduler

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- config
@dataclass
class ModelSection:
    preset: str = "tiny"  # DualViTokConfig preset ("tiny" | "illume-plus")
    quantizer: str = "simvq"  # "simvq" (paper) | "vq" (vanilla baseline, Table 8)
    overrides: dict = field(default_factory=dict)  # any other DualViTokConfig field


@dataclass
class PerceptualSection:
    vgg_path: str | None = None  # torchvision vgg16 weights (local file)
    lin_path: str | None = None  # LPIPS v0.1 vgg.pth (local file); without both, LPIPS is off


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


@dataclass
class TokenizerTrainingConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    loss: TokenizerLossConfig = field(default_factory=TokenizerLossConfig)
    perceptual: PerceptualSection = field(default_factory=PerceptualSection)
    generator_optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    discriminator_optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainSection = field(default_factory=TrainSection)


# ----------------------------------------------------------------------------- building blocks
def build_tokenizer(section: ModelSection) -> DualViTok:
    return DualViTok(DualViTokConfig.from_name(section.preset, quantizer=section.quantizer, **section.overrides))


def load_initial_weights(model: DualViTok, discriminator: torch.nn.Module, path: str | Path) -> None:
    """Start from a previous stage: a `save_pretrained` directory (tokenizer weights only) or a
    training checkpoint step directory (tokenizer and discriminator). Shapes must match."""
    path = Path(path)
    if (path / "training_state.pt").is_file():
        checkpoint = Checkpoint(path)
        model.load_state_dict(checkpoint.tensors("model"), strict=True)
        if checkpoint.has("discriminator"):
            discriminator.load_state_dict(checkpoint.tensors("discriminator"), strict=True)
    elif path.is_dir():
        model.load_state_dict(DualViTok.from_pretrained(path).state_dict(), strict=True)
    else:
        raise FileNotFoundError(f"init_from: no tokenizer directory or checkpoint at {path}")


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


def _unwrap(module):
    return getattr(module, "module", module)


class CodebookCounter:
    """Counts of codes used since the last `usage()` call (summed over processes)."""

    def __init__(self, codebook_size: int, device: torch.device):
        self.counts = torch.zeros(codebook_size, dtype=torch.long, device=device)

    def add(self, ids: torch.Tensor) -> None:
        self.counts += torch.bincount(ids.reshape(-1), minlength=self.counts.numel())

    def usage(self) -> float:
        fraction = (all_reduce_sum(self.counts) > 0).float().mean().item()
        self.counts.zero_()
        return fraction


# ----------------------------------------------------------------------------- training
def train(config: TokenizerTrainingConfig) -> DualViTok:
    """Run (or resume) the recipe; returns this process's trained tokenizer (unwrapped)."""
    cfg = config.train
    ctx: DistributedContext = init_distributed(cfg.device)
    device = ctx.device
    output_dir = Path(cfg.output_dir)
    if ctx.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(output_dir / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))

    # Same seed everywhere for identical initial weights (DDP also broadcasts rank 0's).
    torch.manual_seed(cfg.seed)
    model = build_tokenizer(config.model).to(device)
    perceptual = build_perceptual_loss(config.perceptual.vgg_path, config.perceptual.lin_path)
    loss_fn = TokenizerLoss(config.loss, perceptual=perceptual).to(device)
    discriminator = loss_fn.discriminator
    if perceptual is not None:
        perceptual.to(device).eval().requires_grad_(False)

    generator_optimizer = build_optimizer(model, config.generator_optimizer)
    discriminator_optimizer = build_optimizer(discriminator, config.discriminator_optimizer)
    # Each schedule drives its own optimiser (the release attached the discriminator's to the generator's).
    generator_scheduler = build_scheduler(generator_optimizer, config.generator_optimizer, cfg.max_steps)
    discriminator_scheduler = build_scheduler(discriminator_optimizer, config.discriminator_optimizer,
                                              max(1, cfg.max_steps - config.loss.disc_start))
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay else None

    dataset = build_dataset(config.data, seed=cfg.seed)
    sampler = BucketBatchSampler(dataset.sample_sizes(), cfg.batch_size, seed=cfg.seed, shuffle=True,
                                 drop_last=cfg.drop_last, num_replicas=ctx.world_size, rank=ctx.rank)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_images, num_workers=cfg.num_workers,
                        pin_memory=device.type == "cuda",
                        # own generator: creating an iterator must not consume the global RNG (exact resume)
                        generator=torch.Generator().manual_seed(cfg.seed))

    # ---- resume, or start (possibly from the previous stage) ----
    checkpoints = CheckpointManager(output_dir / "checkpoints", keep_last=cfg.keep_last)
    metrics_log = MetricsLogger(output_dir / "metrics.jsonl", enabled=ctx.is_main)
    step, epoch, batch_in_epoch, images_seen, num_skipped = 0, 0, 0, 0, 0
    images_since_sync = 0  # this process's images not yet added to the global `images_seen`
    latest = checkpoints.latest() if cfg.resume else None
    if latest is not None:
        model.load_state_dict(latest.tensors("model"), strict=True)
        discriminator.load_state_dict(latest.tensors("discriminator"), strict=True)
        if ema is not None:
            ema.load_state_dict(latest.tensors("ema"))
        state = latest.training_state()
        generator_optimizer.load_state_dict(state["generator_optimizer"])
        discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])
        generator_scheduler.load_state_dict(state["generator_scheduler"])
        discriminator_scheduler.load_state_dict(state["discriminator_scheduler"])
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        images_seen = state["images_seen"]
        rank_state = latest.rank_state()
        if rank_state is not None:
            restore_rng_state(rank_state)
            num_skipped = rank_state["num_skipped"]
        else:  # the world size changed: the run continues, but not bit-for-bit
            logger.warning("checkpoint %s has no RNG state for rank %d; reseeding", latest.path, ctx.rank)
            torch.manual_seed(cfg.seed + 1000 * ctx.rank + step)
        metrics_log.truncate_after(step)
        logger.info("resumed from %s at step %d", latest.path, step)
    else:
        if cfg.init_from:
            load_initial_weights(model, discriminator, cfg.init_from)
            if ema is not None:
                ema = EMA(model, cfg.ema_decay)
        torch.manual_seed(cfg.seed + 1000 * ctx.rank)  # per-rank randomness (noise injection) from here on

    generator = DistributedDataParallel(model) if ctx.is_distributed else model
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16(cfg.mixed_precision, device))
    trainable = [p for p in model.parameters() if p.requires_grad]
    last_layer = model.pixel_decoder.conv_out.weight if config.loss.adaptive_gan_weight else None
    semantic_usage = CodebookCounter(model.config.semantic_codebook_size, device)
    pixel_usage = CodebookCounter(model.config.pixel_codebook_size, device)

    def count_images():  # collective: add every process's images since the last call
        nonlocal images_seen, images_since_sync
        images_seen += int(all_reduce_sum(torch.tensor(images_since_sync, device=device)).item())
        images_since_sync = 0

    def save_checkpoint():
        count_images()
        tensors = {"model": model.state_dict(), "discriminator": discriminator.state_dict()}
        if ema is not None:
            tensors["ema"] = ema.state_dict()
        checkpoints.save(step, tensors, {
            "generator_optimizer": generator_optimizer.state_dict(),
            "discriminator_optimizer": discriminator_optimizer.state_dict(),
            "generator_scheduler": generator_scheduler.state_dict(),
            "discriminator_scheduler": discriminator_scheduler.state_dict(),
            "epoch": epoch, "batch_in_epoch": batch_in_epoch,
            "images_seen": images_seen,
        }, rank_state={**capture_rng_state(), "num_skipped": num_skipped})  # skips are counted per process

    def log_window():  # collective: one metrics line for the steps since the previous one
        nonlocal window_sums, window_counts, window_images, window_start
        elapsed = time.perf_counter() - window_start
        count_images()
        names = sorted(window_sums)
        means = all_reduce_sum(torch.tensor([window_sums[k] / window_counts[k] for k in names],
                                            dtype=torch.float64, device=device)) / ctx.world_size
        images = all_reduce_sum(torch.tensor(window_images, device=device)).item()
        record = dict(zip(names, means.tolist()))
        record.update(
            epoch=epoch,
            lr_generator=generator_scheduler.get_last_lr()[0],
            lr_discriminator=discriminator_scheduler.get_last_lr()[0],
            semantic_codebook_usage=semantic_usage.usage(),
            pixel_codebook_usage=pixel_usage.usage(),
            images_per_second=images / max(elapsed, 1e-9),
            images_seen=images_seen,
            skipped_images=int(all_reduce_sum(torch.tensor(num_skipped, device=device)).item()) + skipped_at_scan,
        )
        metrics_log.log(step, record)
        window_sums, window_counts, window_images, window_start = {}, {}, 0, time.perf_counter()

    progress = ProgressBar(cfg.max_steps, initial=step, enabled=ctx.is_main and cfg.progress_bar)
    window_sums: dict[str, float] = {}  # per-key sums and counts: GAN terms exist only from disc_start
    window_counts: dict[str, int] = {}
    window_images, window_start = 0, time.perf_counter()
    start_time = time.perf_counter()
    skipped_at_scan = dataset.num_unreadable
    if skipped_at_scan and ctx.is_main:
        logger.warning("%d unreadable images left out of training", skipped_at_scan)
    model.train()
    loss_fn.train()
    stop = step >= cfg.max_steps
    last_saved_step = step if latest is not None else -1
    while not stop:
        if batch_in_epoch >= sampler.batches_per_epoch():
            epoch, batch_in_epoch = epoch + 1, 0
        dataset.set_epoch(epoch)
        sampler.set_epoch(epoch, start_batch=batch_in_epoch)
        for batch in loader:
            images = batch["images"]
            # Collective decisions: stop on time; skip when any rank's batch was entirely unreadable.
            out_of_time = cfg.max_minutes is not None and time.perf_counter() - start_time > 60 * cfg.max_minutes
            flags = all_reduce_max(torch.tensor([out_of_time, images is None], dtype=torch.float32, device=device))
            if flags[0] > 0:
                stop = True
                break
            batch_in_epoch += 1
            num_skipped += batch["num_skipped"]
            if flags[1] > 0:
                continue
            images = images.to(device, non_blocking=True)

            # 1. generator
            with torch.autocast(**autocast):
                out = generator(images)
                generator_loss, logs = loss_fn.generator_loss(images, out, step, last_layer=last_layer)
            generator_optimizer.zero_grad(set_to_none=True)
            generator_loss.backward()
            if cfg.grad_clip > 0:
                logs["generator_grad_norm"] = torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip).item()
            generator_optimizer.step()
            generator_scheduler.step()
            if ema is not None:
                ema.update(model)

            # 2. discriminator, from disc_start on
            if loss_fn.gan_active(step):
                broadcast_buffers(discriminator)  # BatchNorm statistics: rank 0's, as DDP would
                with torch.autocast(**autocast):
                    discriminator_loss, disc_logs = loss_fn.discriminator_loss(images, out.reconstruction.detach(), step)
                discriminator_optimizer.zero_grad(set_to_none=True)
                discriminator_loss.backward()
                average_gradients(discriminator)
                if cfg.grad_clip > 0:
                    disc_logs["discriminator_grad_norm"] = torch.nn.utils.clip_grad_norm_(
                        discriminator.parameters(), cfg.grad_clip).item()
                discriminator_optimizer.step()
                discriminator_scheduler.step()  # counts discriminator steps: warmup starts at disc_start
                logs.update(disc_logs)

            step += 1
            images_since_sync += images.shape[0]
            semantic_usage.add(out.semantic_ids)
            pixel_usage.add(out.pixel_ids)
            for key, value in logs.items():
                window_sums[key] = window_sums.get(key, 0.0) + value
                window_counts[key] = window_counts.get(key, 0) + 1
            window_images += images.shape[0]
            progress.update(step, images.shape[0],
                            {k: logs[k] for k in ("total_loss", "reconstruction_loss", "discriminator_loss") if k in logs})

            if step % cfg.log_every == 0 or step == cfg.max_steps:
                log_window()
            if step % cfg.checkpoint_every == 0:
                save_checkpoint()
                last_saved_step = step
            if step >= cfg.max_steps:
                stop = True
                break
    progress.close()

    if window_counts:  # stopped by the time limit mid-window: log the steps since the last line
        log_window()
    if last_saved_step != step:
        save_checkpoint()
    final_dir = output_dir / "final"
    if ctx.is_main:
        model.save_pretrained(final_dir)
        if ema is not None:
            with ema.average_parameters(model):
                model.save_pretrained(output_dir / "final_ema")
        logger.info("done at step %d: %s", step, final_dir)
    cleanup_distributed()
    return model


# ----------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="illume-plus train tokenizer",
        description="Train DualViTok. Overrides are section.key=value, e.g. train.max_steps=100 model.quantizer=vq")
    parser.add_argument("config", help="YAML recipe, e.g. configs/tokenizer/stage1_256.yaml")
    parser.add_argument("overrides", nargs="*", help="section.key=value (value parsed as YAML)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(TokenizerTrainingConfig, args.config, args.overrides)
    train(config)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
