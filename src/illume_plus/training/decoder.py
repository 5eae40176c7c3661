"""Diffusion-decoder training recipe (SPEC §4; the authors never released theirs).

    illume-plus train decoder configs/decoder/stage1_512.yaml train.output_dir=/work/runs/decoder_s1
    torchrun --nproc_per_node 8 -m illume_plus.training.decoder configs/decoder/stage1_512.yaml

One step, on a batch of images of one aspect-ratio bucket (B, 3, H, W) in [-1, 1]:
  1. token image = the image downsampled by `upscale_factor` (2); the FROZEN DualViTok encodes it
     into semantic / pixel code grids on the fly;
  2. half the samples get 10% of their tokens replaced by random codes (robustness to the MLLM's
     mistakes); codes -> fused 64-channel map; each branch dropped to zeros per sample (semantic
     10%, pixel 50%) so the model also learns the unconditional branch used by CFG;
  3. the frozen VAE encodes the full-size image; latent x scaling_factor; noise at a random
     timestep (DDPM forward process of the sampling scheduler's betas);
  4. the UNet (4 latent + 64 code channels, zero prompts, size-index time id) predicts the
     scheduler's target (noise for "epsilon", velocity for "v_prediction"); MSE; backward (DDP
     averages), clip, AdamW, LR schedule, EMA.

Two stages: outputs near 512² (stage 1, from SDXL with conv_in widened) then near 1024²
(stage 2, `train.init_from` = stage 1's `final_ema/`), each in 11 aspect-ratio buckets; an image
that would lose more than 20% of its area to the crop is left out.

A run writes into `train.output_dir`: `config.yaml`, `metrics.jsonl`, `checkpoints/` (rerunning
the same command resumes exactly from `checkpoints/latest`) and, at the end, `final/` (and
`final_ema/`) in `DiffusionDecoderPipeline.save_pretrained` format. Sharding the UNet with FSDP
is not implemented: DDP holds the full SDXL UNet (2.6B) with fp32 gradients, AdamW state and EMA
per GPU (~52 GB), which fits 80 GB cards; use gradient checkpointing for 1024² batches.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from diffusers import AutoencoderKL, DDPMScheduler
from PIL import Image
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ..data import BucketBatchSampler, ImageDataConfig, collate_images
from ..data.datasets import ImageFolderDataset, JsonlImageDataset, ProceduralImageDataset
from ..diffusion import (CodeEmbedder, DiffusionDecoder, DiffusionDecoderConfig, DiffusionDecoderPipeline,
                         drop_code_branches, perturb_token_ids, size_condition_index)
from ..diffusion.pipeline import build_scheduler
from ..tokenizer.config import DualViTokConfig
from ..tokenizer.model import DualViTok
from ..utils.io import atomic_path
from .checkpoint import Checkpoint, CheckpointManager, restore_rng_state
from .config import load_config, to_dict
from .distributed import DistributedContext, all_reduce_max, all_reduce_sum, cleanup_distributed, init_distributed
from .ema import EMA
from .logging import MetricsLogger, ProgressBar
from .optim import OptimizerConfig, build_optimizer, build_scheduler as build_lr_scheduler
from .tokenizer import use_bf16

logger = logging.getLogger(__name__)

# Output sizes (H, W) of the 11 aspect-ratio buckets: 2x the MLLM's generation sizes.
STAGE2_BUCKETS = [[1024, 1024], [1024, 768], [768, 1024], [2048, 512], [512, 2048], [1920, 640],
                  [640, 1920], [1536, 768], [768, 1536], [1152, 768], [768, 1152]]


# ----------------------------------------------------------------------------- config
@dataclass
class DecoderModelSection:
    preset: str = "tiny"  # DiffusionDecoderConfig preset with random weights, when sdxl_path is None
    sdxl_path: str | None = None  # SDXL base folder (unet/, vae/, scheduler/): conv_in widened to 68
    prediction_type: str | None = None  # None: the scheduler's; or "epsilon" | "v_prediction"
    vae_scaling_factor: float | None = None  # None: the VAE's (SDXL 0.13025); set for an uncalibrated VAE
    gradient_checkpointing: bool = False


@dataclass
class VisionTokenizerSection:
    path: str | None = None  # DualViTok.save_pretrained folder (frozen; its codebooks condition the UNet)
    preset: str = "tiny"  # random-weight DualViTok when path is None (tests, CPU smoke runs)
    seed: int = 0


@dataclass
class ConditioningSection:
    perturb_sample_prob: float = 0.5  # fraction of samples whose tokens are perturbed
    perturb_token_prob: float = 0.1  # fraction of their tokens replaced by random codes
    perturb_branches: list = field(default_factory=lambda: ["semantic", "pixel"])
    semantic_drop_prob: float = 0.1  # zero the semantic features of a sample
    pixel_drop_prob: float = 0.5  # zero the pixel features of a sample


@dataclass
class BucketSection:
    sizes: list = field(default_factory=lambda: [list(s) for s in STAGE2_BUCKETS])  # output (H, W)
    max_crop_fraction: float = 0.2  # drop images that would lose more of their area to the crop


@dataclass
class EvalSection:
    every: int = 0  # steps between held-out evaluations; 0: never
    num_images: int = 8
    image_seed: int = 1_000_000  # procedural held-out images (disjoint from the training seeds)
    size: list = field(default_factory=lambda: [1024, 1024])  # output (H, W) of the held-out images
    timesteps: list = field(default_factory=lambda: [100, 300, 500, 700, 900])  # fixed denoising-loss probes
    sample_steps: int = 10  # Euler steps of the reconstruction probe; 0 disables it
    guidance_scale: float = 2.0
    seed: int = 0


@dataclass
class DecoderTrainSection:
    output_dir: str = "runs/decoder"
    seed: int = 0
    batch_size: int = 16  # per process; the paper's global batch is 128
    max_steps: int = 1000
    max_minutes: float | None = None  # stop (with a checkpoint) after this much wall time
    grad_clip: float = 1.0  # 0 disables clipping
    mixed_precision: str = "auto"  # "auto" (bf16 on CUDA when supported) | "bf16" | "no"
    ema_decay: float | None = None  # e.g. 0.9999; None: no EMA
    init_from: str | None = None  # previous stage: a pipeline folder (final_ema/) or a checkpoint step dir
    resume: bool = True
    checkpoint_every: int = 1000
    keep_last: int = 3
    log_every: int = 10
    num_workers: int = 0
    drop_last: bool = False
    device: str | None = None
    progress_bar: bool = True


@dataclass
class DecoderTrainingConfig:
    model: DecoderModelSection = field(default_factory=DecoderModelSection)
    tokenizer: VisionTokenizerSection = field(default_factory=VisionTokenizerSection)
    data: ImageDataConfig = field(default_factory=ImageDataConfig)  # `resize`/`size` unused: buckets decide
    buckets: BucketSection = field(default_factory=BucketSection)
    conditioning: ConditioningSection = field(default_factory=ConditioningSection)
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=2e-5, betas=[0.9, 0.999]))
    eval: EvalSection = field(default_factory=EvalSection)
    train: DecoderTrainSection = field(default_factory=DecoderTrainSection)


# ----------------------------------------------------------------------------- aspect-ratio buckets
class AspectBucketTransform:
    """Resize an image to cover the bucket of nearest aspect ratio, then center-crop to it.

    Follows the data package's transform interface (`target_size`, `__call__(image, flip)`), so
    its datasets and `BucketBatchSampler` group images by bucket. `target_size` is None for an
    image whose crop would remove more than `max_crop_fraction` of its area: never sampled."""

    mode = "buckets"  # not "fixed": the datasets ask `target_size` per image

    def __init__(self, sizes: list, max_crop_fraction: float = 0.2):
        if not sizes:
            raise ValueError("at least one bucket size is needed")
        self.sizes = [tuple(int(v) for v in s) for s in sizes]
        if any(len(s) != 2 or min(s) <= 0 for s in self.sizes):
            raise ValueError(f"bucket sizes must be positive (H, W) pairs, got {sizes}")
        if not 0.0 <= max_crop_fraction < 1.0:
            raise ValueError(f"max_crop_fraction must lie in [0, 1), got {max_crop_fraction}")
        self.max_crop_fraction = max_crop_fraction

    def bucket(self, height: int, width: int) -> tuple[int, int]:
        log_aspect = math.log(width / height)
        return min(self.sizes, key=lambda s: abs(math.log(s[1] / s[0]) - log_aspect))

    @staticmethod
    def crop_fraction(height: int, width: int, bucket: tuple[int, int]) -> float:
        """Fraction of the image's area cut away when covering `bucket` and center-cropping."""
        ratio = (width / height) / (bucket[1] / bucket[0])
        return 1.0 - min(ratio, 1.0 / ratio)

    def target_size(self, height: int, width: int) -> tuple[int, int] | None:
        bucket = self.bucket(height, width)
        return bucket if self.crop_fraction(height, width, bucket) <= self.max_crop_fraction else None

    def __call__(self, image: Image.Image, flip: bool = False) -> torch.Tensor:
        width, height = image.size
        out_h, out_w = self.bucket(height, width)
        scale = max(out_h / height, out_w / width)
        new_h, new_w = max(out_h, round(height * scale)), max(out_w, round(width * scale))
        image = image.resize((new_w, new_h), Image.BICUBIC)
        top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
        image = image.crop((left, top, left + out_w, top + out_h))
        if flip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        array = np.asarray(image, dtype=np.uint8).copy()
        return torch.from_numpy(array).permute(2, 0, 1).float() / 127.5 - 1.0


def build_bucketed_dataset(data: ImageDataConfig, buckets: BucketSection, seed: int = 0):
    """One of the data package's datasets, with the aspect-bucket transform."""
    transform = AspectBucketTransform(buckets.sizes, buckets.max_crop_fraction)
    if data.source == "procedural":
        sizes = data.source_sizes or [list(transform.sizes[0])]
        return ProceduralImageDataset(data.num_images, transform, sizes, data.image_seed, data.hflip_probability, seed)
    if data.source in ("folder", "jsonl") and not data.path:
        raise ValueError(f"data source {data.source!r} needs data.path")
    if data.source == "folder":
        return ImageFolderDataset(data.path, transform, data.hflip_probability, seed)
    if data.source == "jsonl":
        return JsonlImageDataset(data.path, transform, data.hflip_probability, seed, data.image_root)
    raise ValueError(f"unknown data source {data.source!r}; choose 'procedural', 'folder' or 'jsonl'")


# ----------------------------------------------------------------------------- building blocks
def build_tokenizer(section: VisionTokenizerSection) -> DualViTok:
    if section.path is not None:
        tokenizer = DualViTok.from_pretrained(section.path)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(section.seed)
            tokenizer = DualViTok(DualViTokConfig.from_name(section.preset))
    return tokenizer.eval().requires_grad_(False)


def build_components(config: DecoderTrainingConfig, tokenizer: DualViTok):
    """(decoder with trainable UNet, frozen VAE, sampling scheduler), codebooks copied from `tokenizer`."""
    section = config.model
    init_from = Path(config.train.init_from) if config.train.init_from else None
    if init_from is not None and (init_from / "unet").is_dir():  # a previous stage's pipeline folder
        pipe = DiffusionDecoderPipeline.from_pretrained(init_from, vision_tokenizer=tokenizer)
        decoder, vae, scheduler = pipe.decoder, pipe.vae, pipe.scheduler
    elif section.sdxl_path is not None:
        pipe = DiffusionDecoderPipeline.from_sdxl(section.sdxl_path, vision_tokenizer=tokenizer)
        decoder, vae, scheduler = pipe.decoder, pipe.vae, pipe.scheduler
    else:
        decoder_config = DiffusionDecoderConfig.from_name(section.preset)
        embedder = CodeEmbedder.from_tokenizer(tokenizer)
        decoder_config.code_embedder = embedder.config
        decoder = DiffusionDecoder(decoder_config, code_embedder=embedder)
        vae = AutoencoderKL(**decoder_config.vae)
        scheduler = build_scheduler(decoder_config.scheduler)
    if section.prediction_type is not None:
        scheduler = type(scheduler).from_config(scheduler.config, prediction_type=section.prediction_type)
    if section.vae_scaling_factor is not None:
        vae.register_to_config(scaling_factor=section.vae_scaling_factor)
    if init_from is not None and (init_from / "training_state.pt").is_file():
        decoder.unet.load_state_dict(Checkpoint(init_from).tensors("model"), strict=True)
    elif init_from is not None and not (init_from / "unet").is_dir():
        raise FileNotFoundError(f"init_from: no pipeline folder or checkpoint at {init_from}")
    decoder.unet.train().requires_grad_(True)
    decoder.code_embedder.requires_grad_(False)
    vae.eval().requires_grad_(False)
    if section.gradient_checkpointing:
        decoder.unet.enable_gradient_checkpointing()
    return decoder, vae, scheduler


def token_images(images: torch.Tensor, upscale_factor: int) -> torch.Tensor:
    """The token-resolution image the decoder super-resolves: antialiased bicubic downsample."""
    h, w = images.shape[-2:]
    small = F.interpolate(images.float(), size=(h // upscale_factor, w // upscale_factor), mode="bicubic",
                          antialias=True, align_corners=False)
    return small.clamp(-1, 1)


@torch.no_grad()
def encode_latents(vae: AutoencoderKL, images: torch.Tensor, sample: bool = True) -> torch.Tensor:
    dist = vae.encode(images.to(vae.dtype)).latent_dist
    latents = dist.sample() if sample else dist.mode()
    return latents.float() * vae.config.scaling_factor


def training_target(noise_scheduler: DDPMScheduler, latents, noise, timesteps) -> torch.Tensor:
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return noise_scheduler.get_velocity(latents, noise, timesteps)
    if prediction_type == "sample":
        return latents
    raise ValueError(f"unsupported prediction_type {prediction_type!r}")


def codes_and_latents(decoder: DiffusionDecoder, vae, tokenizer, images,
                      conditioning: ConditioningSection | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused code maps (B, 64, h2, w2) of the token images and scaled VAE latents of the images.
    With a `conditioning` section (training): tokens perturbed, branches dropped, latents sampled;
    without (evaluation): clean codes and the latent distribution's mode."""
    with torch.no_grad():
        encoding = tokenizer.encode(token_images(images, decoder.config.upscale_factor))
        semantic_ids, pixel_ids = encoding.semantic_ids, encoding.pixel_ids
        codebooks = decoder.code_embedder.config
        if conditioning is not None:
            if "semantic" in conditioning.perturb_branches:
                semantic_ids = perturb_token_ids(semantic_ids, codebooks.semantic_codebook_size,
                                                 conditioning.perturb_sample_prob, conditioning.perturb_token_prob)
            if "pixel" in conditioning.perturb_branches:
                pixel_ids = perturb_token_ids(pixel_ids, codebooks.pixel_codebook_size,
                                              conditioning.perturb_sample_prob, conditioning.perturb_token_prob)
        fused = decoder.fused_codes(semantic_ids, pixel_ids)
        if conditioning is not None:
            fused = drop_code_branches(fused, codebooks.code_dim, conditioning.semantic_drop_prob,
                                       conditioning.pixel_drop_prob)
        latents = encode_latents(vae, images, sample=conditioning is not None)
    return fused, latents


def denoising_loss(decoder, noise_scheduler, latents, fused, size_index, timesteps=None, noise=None):
    """MSE between the UNet's prediction at noised `latents` and the scheduler's target; random
    timesteps and noise unless given. `decoder` may be wrapped in DistributedDataParallel."""
    if noise is None:
        noise = torch.randn_like(latents)
    if timesteps is None:
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],),
                                  device=latents.device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    target = training_target(noise_scheduler, latents, noise, timesteps)
    prediction = decoder(noisy, timesteps, fused, size_index)
    return F.mse_loss(prediction.float(), target.float())


def diffusion_loss(decoder, vae, tokenizer, noise_scheduler, images, conditioning: ConditioningSection | None,
                   timesteps=None, noise=None) -> torch.Tensor:
    """The training loss for a batch of same-size images (B, 3, H, W) in [-1, 1]."""
    model = getattr(decoder, "module", decoder)  # DistributedDataParallel keeps the model in .module
    fused, latents = codes_and_latents(model, vae, tokenizer, images, conditioning)
    size_index = size_condition_index(*images.shape[-2:], model.config.size_table, model.config.unknown_size)
    return denoising_loss(decoder, noise_scheduler, latents, fused, size_index, timesteps, noise)


@torch.no_grad()
def evaluate(decoder: DiffusionDecoder, vae, tokenizer, noise_scheduler, sampling_scheduler, images,
             section: EvalSection) -> dict:
    """Held-out figures at fixed noise:
    - eval_denoise_loss: the training loss at fixed timesteps with clean codes;
    - eval_denoise_loss_uncond: the same with zero codes; the gap is what the codes contribute;
    - eval_latent_mse (with `sample_steps`): full sampling vs the clean latents of the targets;
    - eval_image_mse: the decoded sample vs the VAE's own reconstruction of the target."""
    was_training = decoder.training
    decoder.eval()
    fused, latents = codes_and_latents(decoder, vae, tokenizer, images, None)
    size_index = size_condition_index(*images.shape[-2:], decoder.config.size_table, decoder.config.unknown_size)
    generator = torch.Generator().manual_seed(section.seed)
    conditional, unconditional = [], []
    for t in section.timesteps:
        noise = torch.randn(latents.shape, generator=generator).to(latents.device)
        timesteps = torch.full((latents.shape[0],), int(t), device=latents.device, dtype=torch.long)
        conditional.append(denoising_loss(decoder, noise_scheduler, latents, fused, size_index, timesteps, noise).item())
        unconditional.append(denoising_loss(decoder, noise_scheduler, latents, torch.zeros_like(fused), size_index,
                                            timesteps, noise).item())
    metrics = {"eval_denoise_loss": float(np.mean(conditional)),
               "eval_denoise_loss_uncond": float(np.mean(unconditional))}
    if section.sample_steps > 0:
        pipe = DiffusionDecoderPipeline(decoder, vae, sampling_scheduler)
        sampled = pipe(fused_codes=fused, num_inference_steps=section.sample_steps,
                       guidance_scale=section.guidance_scale, generator=torch.Generator().manual_seed(section.seed),
                       output_type="latent", progress_bar=False)
        metrics["eval_latent_mse"] = F.mse_loss(sampled.float(), latents).item()
        decoded = vae.decode(sampled.to(vae.dtype) / vae.config.scaling_factor).sample.float()
        reference = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample.float()
        metrics["eval_image_mse"] = F.mse_loss(decoded.clamp(-1, 1), reference.clamp(-1, 1)).item()
    decoder.train(was_training)
    return metrics


def held_out_images(section: EvalSection, device) -> torch.Tensor:
    transform = AspectBucketTransform([section.size])
    dataset = ProceduralImageDataset(section.num_images, transform, [section.size], image_seed=section.image_seed)
    return torch.stack([dataset[i]["image"] for i in range(len(dataset))]).to(device)


# ----------------------------------------------------------------------------- training
def train(config: DecoderTrainingConfig) -> Path:
    cfg = config.train
    ctx: DistributedContext = init_distributed(cfg.device)
    device = ctx.device
    output_dir = Path(cfg.output_dir)
    if ctx.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(output_dir / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))

    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    tokenizer = build_tokenizer(config.tokenizer).to(device)
    decoder, vae, sampling_scheduler = build_components(config, tokenizer)
    decoder.to(device)
    vae.to(device)
    # Training noise: the DDPM forward process with the sampling scheduler's betas and target.
    noise_scheduler = DDPMScheduler.from_config(sampling_scheduler.config)
    unet = decoder.unet
    optimizer = build_optimizer(unet, config.optimizer)
    lr_scheduler = build_lr_scheduler(optimizer, config.optimizer, cfg.max_steps)
    ema = EMA(unet, cfg.ema_decay) if cfg.ema_decay else None

    dataset = build_bucketed_dataset(config.data, config.buckets, seed=cfg.seed)
    sizes = dataset.sample_sizes()
    filtered = sum(s is None for s in sizes)
    if ctx.is_main and filtered:
        logger.info("%d of %d images left out (crop > %.0f%% or unreadable)", filtered, len(sizes),
                    100 * config.buckets.max_crop_fraction)
    sampler = BucketBatchSampler(sizes, cfg.batch_size, seed=cfg.seed, shuffle=True, drop_last=cfg.drop_last,
                                 num_replicas=ctx.world_size, rank=ctx.rank)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_images, num_workers=cfg.num_workers,
                        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(cfg.seed))
    eval_images = held_out_images(config.eval, device) if config.eval.every > 0 and ctx.is_main else None

    checkpoints = CheckpointManager(output_dir / "checkpoints", keep_last=cfg.keep_last)
    metrics_log = MetricsLogger(output_dir / "metrics.jsonl", enabled=ctx.is_main)
    step, epoch, batch_in_epoch, images_seen, num_skipped = 0, 0, 0, 0, 0
    latest = checkpoints.latest() if cfg.resume else None
    if latest is not None:
        unet.load_state_dict(latest.tensors("model"), strict=True)
        if ema is not None:
            ema.load_state_dict(latest.tensors("ema"))
        state = latest.training_state()
        optimizer.load_state_dict(state["optimizer"])
        lr_scheduler.load_state_dict(state["lr_scheduler"])
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        images_seen, num_skipped = state["images_seen"], state["num_skipped"]
        rank_state = latest.rank_state()
        if rank_state is not None:
            restore_rng_state(rank_state)
        else:  # world size changed: the run continues, not bit for bit
            logger.warning("checkpoint %s has no RNG state for rank %d; reseeding", latest.path, ctx.rank)
            torch.manual_seed(cfg.seed + 1000 * ctx.rank + step)
        metrics_log.truncate_after(step)
        logger.info("resumed from %s at step %d", latest.path, step)
    else:
        torch.manual_seed(cfg.seed + 1000 * ctx.rank)  # per-rank noise, timesteps, perturbations

    model = DistributedDataParallel(decoder, broadcast_buffers=False) if ctx.is_distributed else decoder
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16(cfg.mixed_precision, device))
    trainable = [p for p in unet.parameters() if p.requires_grad]

    def save_checkpoint():
        tensors = {"model": unet.state_dict()}
        if ema is not None:
            tensors["ema"] = ema.state_dict()
        checkpoints.save(step, tensors, {
            "optimizer": optimizer.state_dict(), "lr_scheduler": lr_scheduler.state_dict(),
            "epoch": epoch, "batch_in_epoch": batch_in_epoch,
            "images_seen": images_seen, "num_skipped": num_skipped,
        })

    def run_eval():
        if eval_images is None:
            return
        # evaluation must not shift the training RNG streams (exact resume)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.autocast(**autocast):
            metrics = evaluate(decoder, vae, tokenizer, noise_scheduler, sampling_scheduler, eval_images, config.eval)
        metrics_log.log(step, metrics)
        logger.info("step %d eval %s", step, {k: round(v, 6) for k, v in metrics.items()})

    if step == 0:
        run_eval()
    progress = ProgressBar(cfg.max_steps, initial=step, enabled=ctx.is_main and cfg.progress_bar)
    window_loss, window_grad, window_steps, window_images = 0.0, 0.0, 0, 0
    window_start = start_time = time.perf_counter()
    stop = step >= cfg.max_steps
    last_saved_step = step if latest is not None else -1
    while not stop:
        if batch_in_epoch >= sampler.batches_per_epoch():
            epoch, batch_in_epoch = epoch + 1, 0
        dataset.set_epoch(epoch)
        sampler.set_epoch(epoch, start_batch=batch_in_epoch)
        for batch in loader:
            images = batch["images"]
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

            with torch.autocast(**autocast):
                loss = diffusion_loss(model, vae, tokenizer, noise_scheduler, images, config.conditioning)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
            optimizer.step()
            lr_scheduler.step()
            if ema is not None:
                ema.update(unet)

            step += 1
            images_seen += images.shape[0] * ctx.world_size
            window_loss += loss.item()
            window_grad += grad_norm.item()
            window_steps += 1
            window_images += images.shape[0]
            progress.update(step, images.shape[0] * ctx.world_size, {"loss": loss.item()})

            if step % cfg.log_every == 0 or step == cfg.max_steps:
                elapsed = time.perf_counter() - window_start
                means = all_reduce_sum(torch.tensor([window_loss / window_steps, window_grad / window_steps],
                                                    dtype=torch.float64, device=device)) / ctx.world_size
                metrics_log.log(step, {
                    "loss": means[0].item(), "grad_norm": means[1].item(), "epoch": epoch,
                    "lr": lr_scheduler.get_last_lr()[0], "images_seen": images_seen,
                    "images_per_second": all_reduce_sum(torch.tensor(window_images, device=device)).item()
                    / max(elapsed, 1e-9),
                    "skipped_images": int(all_reduce_sum(torch.tensor(num_skipped, device=device)).item()),
                })
                window_loss, window_grad, window_steps, window_images = 0.0, 0.0, 0, 0
                window_start = time.perf_counter()
            if config.eval.every > 0 and step % config.eval.every == 0:
                run_eval()
            if step % cfg.checkpoint_every == 0:
                save_checkpoint()
                last_saved_step = step
            if step >= cfg.max_steps:
                stop = True
                break
    progress.close()

    if last_saved_step != step:
        save_checkpoint()
    if config.eval.every > 0 and step % config.eval.every != 0:
        run_eval()
    final_dir = output_dir / "final"
    if ctx.is_main:
        pipe = DiffusionDecoderPipeline(decoder, vae, sampling_scheduler)
        pipe.save_pretrained(final_dir)
        if ema is not None:
            with ema.average_parameters(unet):
                pipe.save_pretrained(output_dir / "final_ema")
        logger.info("done at step %d: %s", step, final_dir)
    cleanup_distributed()
    return final_dir


# ----------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="illume-plus train decoder",
        description="Train the ILLUME+ diffusion decoder. Overrides are section.key=value, e.g. train.max_steps=100")
    parser.add_argument("config", help="YAML recipe, e.g. configs/decoder/stage1_512.yaml")
    parser.add_argument("overrides", nargs="*", help="section.key=value (value parsed as YAML)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(DecoderTrainingConfig, args.config, args.overrides)
    train(config)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
