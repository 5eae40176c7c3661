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

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from ..data import ImageDataConfig, build_dataset
from ..losses import TokenizerLoss, TokenizerLossConfig, build_perceptual_loss
from ..tokenizer.config import DualViTokConfig
from ..tokenizer.model import DualViTok
from .checkpoint import Checkpoint, CheckpointManager
from .config import parse_recipe_args
from .distributed import (DistributedContext, all_reduce_sum, average_gradients, broadcast_buffers,
                          cleanup_distributed, init_distributed)
from .ema import EMA
from .logging import MetricsLogger, ProgressBar
from .metrics import WindowedMetrics
from .optim import OptimizerConfig, build_optimizer, build_scheduler
from .run import (RunProgress, TrainSection, autocast_settings, build_loader, prepare_output_dir, resume_progress,
                  save_checkpoint, save_final, seed_process, training_batches)

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- config
@dataclass
class ModelSection:
    preset: str = "tiny"  # DualViTokConfig preset ("tiny" | "illume-plus")
    quantizer: str = "simvq"  # "simvq" (paper) | "vq" (vanilla baseline, Table 8)
    overrides: dict = field(default_factory=dict)  # any other DualViTokConfig field
    # The frozen semantic teacher: only the ViT weights are taken from here (the authors' DualViTok
    # `pytorch_model.bin`, or a Qwen2-VL folder / vision-tower safetensors). A run that starts
    # from scratch (no train.init_from) needs it, unless `random_vit_teacher` says a random ViT
    # is meant (tests, toy runs): distilling a random ViT gives codes without semantics.
    vit_weights: str | None = None
    random_vit_teacher: bool = False


@dataclass
class PerceptualSection:
    vgg_path: str | None = None  # torchvision vgg16 weights (local file)
    lin_path: str | None = None  # LPIPS v0.1 vgg.pth (local file); without both, LPIPS is off


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


def check_semantic_teacher(config: "TokenizerTrainingConfig") -> None:
    """Refuse, before any work, a run whose semantic teacher would silently be a random ViT."""
    section = config.model
    if section.vit_weights or config.train.init_from or section.random_vit_teacher:
        return
    raise ValueError(
        "model.vit_weights is not set: stage 1 distils the frozen semantic ViT, which would be RANDOM. "
        "Give model.vit_weights=<the authors' DualViTok pytorch_model.bin, or a Qwen2-VL folder / vision "
        "tower .safetensors>, start from a previous stage with train.init_from=..., or set "
        "model.random_vit_teacher=true to train against a random teacher on purpose (tests, toy runs)")


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
    check_semantic_teacher(config)
    ctx: DistributedContext = init_distributed(cfg.device)
    device = ctx.device
    output_dir = prepare_output_dir(cfg.output_dir, config, ctx.is_main, resume=cfg.resume)

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
    loader = build_loader(dataset, cfg, ctx)

    # ---- resume, or start (possibly from the previous stage) ----
    checkpoints = CheckpointManager(output_dir / "checkpoints", keep_last=cfg.keep_last)
    metrics_log = MetricsLogger(output_dir / "metrics.jsonl", enabled=ctx.is_main)
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
        progress = resume_progress(latest, ctx, cfg.seed)  # step counters and RNG states
    else:
        if cfg.init_from:
            load_initial_weights(model, discriminator, cfg.init_from)
        if config.model.vit_weights:
            model.load_vit_weights(config.model.vit_weights)  # the ViT only; the rest keeps its init
        if ema is not None and (cfg.init_from or config.model.vit_weights):
            ema = EMA(model, cfg.ema_decay)
        progress = RunProgress(device)
        seed_process(cfg.seed, ctx.rank)  # per-rank randomness (noise injection) from here on
    metrics_log.start(progress.step if latest is not None else None)  # no step logged twice
    progress.skipped_at_scan = dataset.num_unreadable  # files whose header failed

    generator = DistributedDataParallel(model) if ctx.is_distributed else model
    autocast = autocast_settings(cfg.mixed_precision, device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    last_layer = model.pixel_decoder.conv_out.weight if config.loss.adaptive_gan_weight else None
    semantic_usage = CodebookCounter(model.config.semantic_codebook_size, device)
    pixel_usage = CodebookCounter(model.config.pixel_codebook_size, device)
    window = WindowedMetrics(device)  # GAN terms are averaged over the steps from disc_start only

    def save_now():  # collective
        tensors = {"model": model.state_dict(), "discriminator": discriminator.state_dict()}
        if ema is not None:
            tensors["ema"] = ema.state_dict()
        save_checkpoint(checkpoints, progress, tensors, {
            "generator_optimizer": generator_optimizer.state_dict(),
            "discriminator_optimizer": discriminator_optimizer.state_dict(),
            "generator_scheduler": generator_scheduler.state_dict(),
            "discriminator_scheduler": discriminator_scheduler.state_dict(),
        })

    def log_window():  # collective: one metrics line for the steps since the previous one
        record = window.summary()
        record.update(
            epoch=progress.epoch,
            lr_generator=generator_scheduler.get_last_lr()[0],
            lr_discriminator=discriminator_scheduler.get_last_lr()[0],
            semantic_codebook_usage=semantic_usage.usage(),
            pixel_codebook_usage=pixel_usage.usage(),
            images_seen=progress.count_images(),
            skipped_images=progress.skipped_images(),
        )
        metrics_log.log(progress.step, record)

    progress_bar = ProgressBar(cfg.max_steps, initial=progress.step, enabled=ctx.is_main and cfg.progress_bar)
    model.train()
    loss_fn.train()
    for images in training_batches(loader, progress, cfg.max_steps, cfg.max_minutes):
        step = progress.step
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

        progress.step = step = step + 1
        progress.add_images(images.shape[0])
        semantic_usage.add(out.semantic_ids)
        pixel_usage.add(out.pixel_ids)
        window.add(logs, images.shape[0])
        progress_bar.update(step, images.shape[0],
                            {k: logs[k] for k in ("total_loss", "reconstruction_loss", "discriminator_loss") if k in logs})

        if step % cfg.log_every == 0 or step == cfg.max_steps:
            log_window()
        if step % cfg.checkpoint_every == 0:
            save_now()
    progress_bar.close()

    if len(window):  # stopped by the time limit mid-window: log the steps since the last line
        log_window()
    if progress.needs_checkpoint:
        save_now()
    if ctx.is_main:
        final_dir = save_final(output_dir, model.save_pretrained, ema, model)
        logger.info("done at step %d: %s", progress.step, final_dir)
    cleanup_distributed()
    return model


# ----------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_recipe_args(
        TokenizerTrainingConfig, argv, prog="illume-plus train tokenizer",
        description="Train DualViTok. Overrides are section.key=value, e.g. train.max_steps=100 model.quantizer=vq",
        example="configs/tokenizer/stage1_256.yaml")
    train(config)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
