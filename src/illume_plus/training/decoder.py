"""Diffusion-decoder training recipe (SPEC §4; the authors never released theirs).

    illume-plus train decoder configs/decoder/stage1_512.yaml train.output_dir=runs/decoder_s1
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

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler
from PIL import Image
from torch.nn.parallel import DistributedDataParallel

from ..data import ImageDataConfig, build_dataset
from ..data.datasets import ProceduralImageDataset
from ..diffusion import (CodeEmbedder, DiffusionDecoder, DiffusionDecoderConfig, DiffusionDecoderPipeline,
                         drop_code_branches, perturb_token_ids, size_condition_index)
from ..diffusion.pipeline import build_scheduler
from ..tokenizer.config import DualViTokConfig
from ..tokenizer.model import DualViTok
from .checkpoint import Checkpoint, CheckpointManager
from .config import parse_recipe_args
from .distributed import DistributedContext, cleanup_distributed, init_distributed
from .ema import EMA
from .logging import MetricsLogger, ProgressBar
from .metrics import WindowedMetrics
from .optim import OptimizerConfig, build_optimizer, build_scheduler as build_lr_scheduler
from .run import (RunProgress, TrainSection, autocast_settings, build_loader, prepare_output_dir, resume_progress,
                  save_checkpoint, save_final, seed_process, training_batches)

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
class DecoderTrainSection(TrainSection):
    output_dir: str = "runs/decoder"
    batch_size: int = 16  # per process; the paper's global batch is 128
    # init_from: a previous stage's pipeline folder (final_ema/) or a checkpoint step dir


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
    if data.source == "procedural" and not data.source_sizes:  # render at the first bucket's size
        data = dataclasses.replace(data, source_sizes=[list(transform.sizes[0])])
    return build_dataset(data, seed=seed, transform=transform)


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
    output_dir = prepare_output_dir(cfg.output_dir, config, ctx.is_main, resume=cfg.resume)

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
    loader = build_loader(dataset, cfg, ctx)
    eval_images = held_out_images(config.eval, device) if config.eval.every > 0 and ctx.is_main else None

    checkpoints = CheckpointManager(output_dir / "checkpoints", keep_last=cfg.keep_last)
    metrics_log = MetricsLogger(output_dir / "metrics.jsonl", enabled=ctx.is_main)
    latest = checkpoints.latest() if cfg.resume else None
    if latest is not None:
        unet.load_state_dict(latest.tensors("model"), strict=True)
        if ema is not None:
            ema.load_state_dict(latest.tensors("ema"))
        state = latest.training_state()
        optimizer.load_state_dict(state["optimizer"])
        lr_scheduler.load_state_dict(state["lr_scheduler"])
        progress = resume_progress(latest, ctx, cfg.seed)  # step counters and RNG states
    else:
        progress = RunProgress(device)
        seed_process(cfg.seed, ctx.rank)  # per-rank noise, timesteps, perturbations
    metrics_log.start(progress.step if latest is not None else None)  # no step logged twice
    progress.skipped_at_scan = dataset.num_unreadable  # files whose header failed

    model = DistributedDataParallel(decoder, broadcast_buffers=False) if ctx.is_distributed else decoder
    autocast = autocast_settings(cfg.mixed_precision, device)
    trainable = [p for p in unet.parameters() if p.requires_grad]
    window = WindowedMetrics(device)

    def save_now():  # collective
        tensors = {"model": unet.state_dict()}
        if ema is not None:
            tensors["ema"] = ema.state_dict()
        save_checkpoint(checkpoints, progress, tensors,
                        {"optimizer": optimizer.state_dict(), "lr_scheduler": lr_scheduler.state_dict()})

    def log_window():  # collective: one metrics line for the steps since the previous one
        record = window.summary()
        record.update(epoch=progress.epoch, lr=lr_scheduler.get_last_lr()[0], images_seen=progress.count_images(),
                      skipped_images=progress.skipped_images())
        metrics_log.log(progress.step, record)

    def run_eval():
        if eval_images is None:
            return
        # evaluation must not shift the training RNG streams (exact resume)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.autocast(**autocast):
            metrics = evaluate(decoder, vae, tokenizer, noise_scheduler, sampling_scheduler, eval_images, config.eval)
        metrics_log.log(progress.step, metrics)
        logger.info("step %d eval %s", progress.step, {k: round(v, 6) for k, v in metrics.items()})

    if progress.step == 0:
        run_eval()
    progress_bar = ProgressBar(cfg.max_steps, initial=progress.step, enabled=ctx.is_main and cfg.progress_bar)
    for images in training_batches(loader, progress, cfg.max_steps, cfg.max_minutes):
        with torch.autocast(**autocast):
            loss = diffusion_loss(model, vae, tokenizer, noise_scheduler, images, config.conditioning)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        optimizer.step()
        lr_scheduler.step()
        if ema is not None:
            ema.update(unet)

        progress.step = step = progress.step + 1
        progress.add_images(images.shape[0])
        window.add({"loss": loss.item(), "grad_norm": grad_norm.item()}, images.shape[0])
        progress_bar.update(step, images.shape[0] * ctx.world_size, {"loss": loss.item()})  # display estimate

        if step % cfg.log_every == 0 or step == cfg.max_steps:
            log_window()
        if config.eval.every > 0 and step % config.eval.every == 0:
            run_eval()
        if step % cfg.checkpoint_every == 0:
            save_now()
    progress_bar.close()

    if len(window):  # stopped by the time limit mid-window: log the steps since the last line
        log_window()
    if progress.needs_checkpoint:
        save_now()
    if config.eval.every > 0 and progress.step % config.eval.every != 0:
        run_eval()
    final_dir = output_dir / "final"
    if ctx.is_main:
        pipe = DiffusionDecoderPipeline(decoder, vae, sampling_scheduler)
        save_final(output_dir, pipe.save_pretrained, ema, unet)
        logger.info("done at step %d: %s", progress.step, final_dir)
    cleanup_distributed()
    return final_dir


# ----------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_recipe_args(
        DecoderTrainingConfig, argv, prog="illume-plus train decoder",
        description="Train the ILLUME+ diffusion decoder. Overrides are section.key=value, e.g. train.max_steps=100",
        example="configs/decoder/stage1_512.yaml")
    train(config)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
