"""Sampling with the ILLUME+ diffusion decoder: DualViTok codes -> images at 2x the token resolution.

    pipe = DiffusionDecoderPipeline.from_pretrained("dualvitok-sdxl-decoder", vision_tokenizer="dualvitok/")
    images = pipe(semantic_ids, pixel_ids, num_inference_steps=20, guidance_scale=2.0)

A pixel-token grid (h2, w2) gives an output of (32 h2, 32 w2): the token image is 16x the pixel
grid and the decoder doubles it; the latent is (4 h2, 4 w2), where the fused code map is
nearest-resized. Classifier-free guidance batches rows [unconditional, conditional], the
unconditional row with all code channels zero.

Folder layout written by `save_pretrained` (a superset of the authors' diffusers folder, which
has the first three):

    unet/  vae/  scheduler/       diffusers components
    code_embedder/                the two codebooks (config.json + model.safetensors)
    decoder_config.json           size table, resolution factors, prompt shapes
"""

from __future__ import annotations

import importlib.util
import inspect
import os
from pathlib import Path
from typing import Callable, Sequence

import diffusers
import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from PIL import Image
from tqdm.auto import tqdm

from ..utils.io import load_json, save_json
from .conditioning import CodeEmbedder, size_condition_index
from .config import DiffusionDecoderConfig
from .decoder import DiffusionDecoder, widen_conv_in

DECODER_CONFIG_NAME = "decoder_config.json"
# diffusers' low-memory loading needs `accelerate` (not a dependency): use it only when present.
_LOAD_KWARGS = {"low_cpu_mem_usage": importlib.util.find_spec("accelerate") is not None}
_COMPONENT_CONFIGS = ("unet", "vae", "scheduler")


def build_scheduler(config: dict):
    """A diffusers scheduler from a config dict naming its class in `_class_name`."""
    config = dict(config)
    name = config.get("_class_name", "EulerDiscreteScheduler")
    scheduler_cls = getattr(diffusers, name, None)
    if scheduler_cls is None or not hasattr(scheduler_cls, "from_config"):
        raise ValueError(f"unknown diffusers scheduler {name!r}")
    return scheduler_cls.from_config(config)


def _load_scheduler(path: Path):
    config = load_json(path / "scheduler" / "scheduler_config.json")
    return build_scheduler(config)


class DiffusionDecoderPipeline:
    def __init__(self, decoder: DiffusionDecoder, vae: AutoencoderKL, scheduler):
        """Wraps the components as given (no mode or grad change: training evaluates with a
        pipeline around the model it trains); the `from_*` constructors return them in eval mode."""
        self.decoder = decoder
        self.vae = vae
        self.scheduler = scheduler
        self.progress_bar_enabled = True
        if vae.config.latent_channels != decoder.latent_channels:
            raise ValueError(f"VAE has {vae.config.latent_channels} latent channels, the UNet "
                             f"{decoder.latent_channels}")

    # ------------------------------------------------------------------ construction
    @property
    def config(self) -> DiffusionDecoderConfig:
        return self.decoder.config

    @property
    def unet(self) -> UNet2DConditionModel:
        return self.decoder.unet

    @property
    def code_embedder(self) -> CodeEmbedder:
        return self.decoder.code_embedder

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @classmethod
    def from_config(cls, config: DiffusionDecoderConfig, seed: int | None = 0) -> "DiffusionDecoderPipeline":
        """Every component built from its config with random weights (seeded; the global RNG is untouched)."""
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            decoder = DiffusionDecoder(config)
            vae = AutoencoderKL(**config.vae)
        return cls(decoder, vae, build_scheduler(config.scheduler)).eval()

    @classmethod
    def from_preset(cls, name: str, seed: int | None = 0) -> "DiffusionDecoderPipeline":
        """Random weights in a named configuration: "tiny" (tests, CPU) or "sdxl" (full size)."""
        return cls.from_config(DiffusionDecoderConfig.from_name(name), seed=seed)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, vision_tokenizer=None, torch_dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None) -> "DiffusionDecoderPipeline":
        """Load our folder or the authors' `dualvitok-sdxl-decoder` folder (unet/, vae/, scheduler/).

        vision_tokenizer: where the codebooks come from. A DualViTok (or anything with
        `semantic_quantizer`/`pixel_quantizer`), or the path of a DualViTok checkpoint (the
        authors' `pytorch_model.bin`, a .safetensors, or a folder holding one). Defaults to the
        folder's own `code_embedder/`; the authors' folder has none, so it is required there."""
        path = Path(path)
        missing = [name for name in _COMPONENT_CONFIGS if not (path / name).is_dir()]
        if missing:
            raise FileNotFoundError(f"{path} is not a diffusion decoder folder: missing {missing}")
        code_embedder = _code_embedder_from(vision_tokenizer, path / "code_embedder")
        if (path / DECODER_CONFIG_NAME).is_file():
            config = DiffusionDecoderConfig.from_dict(load_json(path / DECODER_CONFIG_NAME))
        else:  # the authors' folder: SDXL defaults
            config = DiffusionDecoderConfig()
        config.code_embedder = code_embedder.config
        unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", torch_dtype=torch_dtype, **_LOAD_KWARGS)
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **_LOAD_KWARGS)
        scheduler = _load_scheduler(path)
        _record_component_configs(config, unet, vae, scheduler)
        pipe = cls(DiffusionDecoder(config, unet, code_embedder), vae, scheduler).eval()
        return pipe.to(device=device, dtype=torch_dtype)

    @classmethod
    def from_sdxl(cls, sdxl_path: str | os.PathLike, vision_tokenizer,
                  config: DiffusionDecoderConfig | None = None) -> "DiffusionDecoderPipeline":
        """Training initialisation from an SDXL base folder: its UNet with conv_in widened by the 64
        code channels (zero-initialised, so it starts as the original UNet), its VAE and scheduler.
        The text encoders and tokenizers in the folder are not loaded."""
        sdxl_path = Path(sdxl_path)
        code_embedder = _code_embedder_from(vision_tokenizer, None)
        config = config or DiffusionDecoderConfig()
        config.code_embedder = code_embedder.config
        unet = UNet2DConditionModel.from_pretrained(sdxl_path, subfolder="unet", **_LOAD_KWARGS)
        extra = config.code_embedder.fused_channels
        if unet.config.in_channels == unet.config.out_channels:
            widen_conv_in(unet, extra)
        vae = AutoencoderKL.from_pretrained(sdxl_path, subfolder="vae", **_LOAD_KWARGS)
        scheduler = _load_scheduler(sdxl_path)
        _record_component_configs(config, unet, vae, scheduler)
        return cls(DiffusionDecoder(config, unet, code_embedder), vae, scheduler).eval()

    def save_pretrained(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.unet.save_pretrained(path / "unet")
        self.vae.save_pretrained(path / "vae")
        self.scheduler.save_pretrained(path / "scheduler")
        self.code_embedder.save_pretrained(path / "code_embedder")
        values = self.config.to_dict()
        for name in _COMPONENT_CONFIGS:  # each lives in its own subfolder
            values.pop(name)
        save_json(values, path / DECODER_CONFIG_NAME)

    def to(self, device: str | torch.device | None = None,
           dtype: torch.dtype | None = None) -> "DiffusionDecoderPipeline":
        """Move the UNet and VAE; cast the UNet (and the VAE unless its config asks to stay fp32
        in half precision, as SDXL's does). The codebooks stay fp32."""
        vae_dtype = dtype
        if dtype in (torch.float16, torch.bfloat16) and self.vae.config.force_upcast:
            vae_dtype = torch.float32
        for module, module_dtype in ((self.decoder.unet, dtype), (self.decoder.code_embedder, None),
                                     (self.vae, vae_dtype)):
            kwargs = {k: v for k, v in (("device", device), ("dtype", module_dtype)) if v is not None}
            if kwargs:  # diffusers warns on any dtype argument, even None
                module.to(**kwargs)
        return self

    def eval(self) -> "DiffusionDecoderPipeline":
        """Inference mode for every component, and no gradients kept for any weight."""
        for module in (self.decoder, self.vae):
            module.eval().requires_grad_(False)
        return self

    def set_progress_bar_config(self, disable: bool = False) -> None:
        self.progress_bar_enabled = not disable

    # ------------------------------------------------------------------ sampling
    def output_size(self, pixel_grid: tuple[int, int]) -> tuple[int, int]:
        """(H, W) of the image decoded from a (h2, w2) pixel-token grid."""
        return pixel_grid[0] * self.config.output_stride, pixel_grid[1] * self.config.output_stride

    def size_index(self, height: int, width: int) -> int:
        return size_condition_index(height, width, self.config.size_table, self.config.unknown_size)

    @torch.no_grad()
    def __call__(self, semantic_ids=None, pixel_ids=None, num_inference_steps: int = 20, guidance_scale: float = 2.0,
                 generator: torch.Generator | list[torch.Generator] | None = None, output_type: str = "pil",
                 latents: torch.Tensor | None = None, fused_codes: torch.Tensor | None = None,
                 progress_bar: bool | None = None,
                 callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None):
        """Decode code grids into images.

        semantic_ids, pixel_ids: (B,h1,w1) / (B,h2,w2) tensors, one (h, w) grid each, or two lists
            of per-image grids whose sizes may differ (grouped by size, returned in input order).
        guidance_scale: CFG weight; <= 1 runs the conditional row only.
        generator: one generator for the whole call, or one per image.
        latents: initial noise (B, 4, 4 h2, 4 w2) instead of drawing it (one size group only).
        fused_codes: (B, 64, h2, w2) code maps instead of ids (one size group only).
        output_type: "pil" (list of PIL images), "pt" (tensor (B,3,H,W) in [0,1], or a list when
            sizes differ), "np" (list of HxWx3 uint8 arrays), "latent" (final latents).
        callback(step, timestep, latents): called after every scheduler step.
        """
        if output_type not in ("pil", "pt", "np", "latent"):
            raise ValueError(f"output_type must be 'pil', 'pt', 'np' or 'latent', got {output_type!r}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        groups, count = self._group_inputs(semantic_ids, pixel_ids, fused_codes)
        if latents is not None and len(groups) != 1:
            raise ValueError("`latents` can only be given when every image has the same size")
        generators = _per_image_generators(generator, count)
        outputs: list = [None] * count
        for positions, codes in groups:
            group_generators = None if generators is None else [generators[i] for i in positions]
            result = self._sample(codes, num_inference_steps, guidance_scale, group_generators, latents,
                                  progress_bar, callback, decode=output_type != "latent")
            for position, item in zip(positions, result):
                outputs[position] = item
        return self._postprocess(outputs, output_type)

    def _group_inputs(self, semantic_ids, pixel_ids, fused_codes) -> tuple[list, int]:
        """[(positions in the call, fused code map (n, 64, h2, w2)), ...] grouped by pixel-grid size."""
        device = next(self.code_embedder.parameters()).device  # codes are looked up where the codebooks are
        if fused_codes is not None:
            if semantic_ids is not None or pixel_ids is not None:
                raise ValueError("give either code ids or fused_codes, not both")
            if fused_codes.dim() != 4 or fused_codes.shape[1] != self.code_embedder.config.fused_channels:
                raise ValueError(f"fused_codes must be (B, {self.code_embedder.config.fused_channels}, h, w), "
                                 f"got {tuple(fused_codes.shape)}")
            return [(list(range(fused_codes.shape[0])), fused_codes.float())], fused_codes.shape[0]
        if semantic_ids is None or pixel_ids is None:
            raise ValueError("semantic_ids and pixel_ids are both required")
        if torch.is_tensor(semantic_ids) and torch.is_tensor(pixel_ids):
            semantic_ids, pixel_ids = _batched(semantic_ids, "semantic_ids"), _batched(pixel_ids, "pixel_ids")
            fused = self.code_embedder(semantic_ids.to(device), pixel_ids.to(device))
            return [(list(range(fused.shape[0])), fused)], fused.shape[0]
        if len(semantic_ids) != len(pixel_ids):
            raise ValueError(f"{len(semantic_ids)} semantic grids but {len(pixel_ids)} pixel grids")
        by_shape: dict[tuple, list[int]] = {}
        semantic_list = [_batched(torch.as_tensor(s), "semantic_ids") for s in semantic_ids]
        pixel_list = [_batched(torch.as_tensor(p), "pixel_ids") for p in pixel_ids]
        for i, (s, p) in enumerate(zip(semantic_list, pixel_list)):
            if s.shape[0] != 1 or p.shape[0] != 1:
                raise ValueError(f"list entry {i} holds {s.shape[0]} grids; give one (h, w) grid per entry")
            by_shape.setdefault((tuple(s.shape), tuple(p.shape)), []).append(i)
        groups = []
        for positions in by_shape.values():
            s = torch.cat([semantic_list[i] for i in positions]).to(device)
            p = torch.cat([pixel_list[i] for i in positions]).to(device)
            groups.append((positions, self.code_embedder(s, p)))
        return groups, len(semantic_list)

    def _sample(self, fused_codes, num_inference_steps, guidance_scale, generators, latents, progress_bar, callback,
                decode: bool = True) -> list[torch.Tensor]:
        """Denoise one size group; returns per-image images (3,H,W) in [0,1] on CPU, or latents."""
        device, dtype = self.device, self.dtype
        b, _, h2, w2 = fused_codes.shape
        height, width = self.output_size((h2, w2))
        f = self.vae_scale_factor
        latent_shape = (b, self.decoder.latent_channels, height // f, width // f)
        size_index = self.size_index(height, width)
        if latents is None:
            latents = _draw_noise(latent_shape, generators, device)
        elif tuple(latents.shape) != latent_shape:
            raise ValueError(f"latents must be {latent_shape} for these codes, got {tuple(latents.shape)}")
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        latents = latents.to(device=device, dtype=torch.float32) * self.scheduler.init_noise_sigma

        use_cfg = guidance_scale > 1.0
        codes = fused_codes.to(device)
        if use_cfg:  # one batched call: rows [unconditional (zero codes), conditional]
            codes = torch.cat([torch.zeros_like(codes), codes])
        # stochastic schedulers (ancestral, SDE) draw their step noise from the caller's generators
        step_kwargs = {}
        if generators is not None and "generator" in inspect.signature(self.scheduler.step).parameters:
            step_kwargs["generator"] = generators[0] if len(set(map(id, generators))) == 1 else generators
        show = self.progress_bar_enabled if progress_bar is None else progress_bar
        for step, t in enumerate(tqdm(self.scheduler.timesteps, desc="diffusion decoder", disable=not show)):
            model_input = torch.cat([latents, latents]) if use_cfg else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            prediction = self.decoder(model_input.to(dtype), t, codes, size_index).float()
            if use_cfg:
                unconditional, conditional = prediction.chunk(2)
                prediction = unconditional + guidance_scale * (conditional - unconditional)
            latents = self.scheduler.step(prediction, t, latents, **step_kwargs).prev_sample
            if callback is not None:
                callback(step, t, latents)
        if not decode:
            return list(latents)
        images = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        return list((images.float() / 2 + 0.5).clamp(0, 1).cpu())

    def _postprocess(self, outputs: list, output_type: str):
        if output_type in ("pt", "latent"):
            same = all(o.shape == outputs[0].shape for o in outputs)
            return torch.stack(outputs) if same else outputs
        arrays = [(o.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for o in outputs]
        if output_type == "np":
            return arrays
        return [Image.fromarray(a) for a in arrays]


def _batched(ids: torch.Tensor, name: str) -> torch.Tensor:
    if ids.dim() == 2:
        ids = ids.unsqueeze(0)
    if ids.dim() != 3:
        raise ValueError(f"{name} must be a (B, h, w) or (h, w) grid, got shape {tuple(ids.shape)}")
    if ids.is_floating_point():
        raise TypeError(f"{name} must hold integer code ids, got {ids.dtype}")
    return ids.long()


def _per_image_generators(generator, count: int) -> list | None:
    if generator is None:
        return None
    if isinstance(generator, torch.Generator):
        return [generator] * count  # one stream, consumed in order
    if len(generator) != count:
        raise ValueError(f"got {len(generator)} generators for {count} images")
    return list(generator)


def _draw_noise(shape: tuple, generators: Sequence[torch.Generator] | None, device) -> torch.Tensor:
    """Standard normal noise; drawn on each generator's device, so a seed gives the same noise
    whatever device the model runs on (for CPU generators)."""
    if generators is None:
        return torch.randn(shape, device=device)
    noise = [torch.randn((1, *shape[1:]), generator=g, device=g.device) for g in generators]
    return torch.cat([n.to(device) for n in noise])


def _record_component_configs(config: DiffusionDecoderConfig, unet, vae, scheduler) -> None:
    """Keep the loaded components' configs in the decoder config (diffusers' private keys dropped,
    but the scheduler's class name kept), so `from_config` can rebuild the same architecture."""
    config.unet = {k: v for k, v in unet.config.items() if not k.startswith("_")}
    config.vae = {k: v for k, v in vae.config.items() if not k.startswith("_")}
    config.scheduler = {k: v for k, v in scheduler.config.items() if not k.startswith("_")}
    config.scheduler["_class_name"] = type(scheduler).__name__


def _code_embedder_from(vision_tokenizer, fallback_dir: Path | None) -> CodeEmbedder:
    if vision_tokenizer is None:
        if fallback_dir is not None and fallback_dir.is_dir():
            return CodeEmbedder.from_pretrained(fallback_dir)
        raise ValueError("no codebooks: this folder has no code_embedder/ (the authors' release keeps them in "
                         "the DualViTok checkpoint); pass vision_tokenizer=<DualViTok or its checkpoint path>")
    if isinstance(vision_tokenizer, CodeEmbedder):
        return vision_tokenizer
    if isinstance(vision_tokenizer, (str, os.PathLike)):
        return CodeEmbedder.from_tokenizer_checkpoint(vision_tokenizer)
    if hasattr(vision_tokenizer, "semantic_quantizer") and hasattr(vision_tokenizer, "pixel_quantizer"):
        return CodeEmbedder.from_tokenizer(vision_tokenizer)
    raise TypeError(f"vision_tokenizer must be a DualViTok, a CodeEmbedder or a checkpoint path, "
                    f"got {type(vision_tokenizer).__name__}")
