"""What the UNet is conditioned on: fused code maps, the output-size time id, and (training) their
perturbation and per-branch dropout (SPEC §4).

The code embedder holds its OWN copy of the two quantizers. The authors' embedder casts the
DualViTok it is given to fp16 in place, silently changing a tokenizer shared with the MLLM; ours
copies the codebooks once and always looks codes up in fp32.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..tokenizer.fusion import fuse_code_maps
from ..tokenizer.quantizer import build_quantizer
from ..utils.io import load_json, load_safetensors, save_json, save_safetensors, torch_load_checkpoint
from .config import CodeEmbedderConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_BRANCHES = ("semantic_quantizer", "pixel_quantizer")


class CodeEmbedder(nn.Module):
    """(semantic ids (B,h1,w1), pixel ids (B,h2,w2)) -> fused code map (B, 64, h2, w2), fp32:
    codebook lookup, semantic map bicubic-upsampled to the pixel grid, concat [semantic, pixel]."""

    def __init__(self, config: CodeEmbedderConfig):
        super().__init__()
        self.config = config
        # Names as in the DualViTok checkpoint, so its quantizer tensors load as they are.
        self.semantic_quantizer = build_quantizer(config.quantizer, config.semantic_codebook_size, config.code_dim)
        self.pixel_quantizer = build_quantizer(config.quantizer, config.pixel_codebook_size, config.code_dim)
        self.requires_grad_(False)  # the codebooks are frozen in every use of the decoder

    def forward(self, semantic_ids: torch.Tensor, pixel_ids: torch.Tensor) -> torch.Tensor:
        if semantic_ids.dim() != 3 or pixel_ids.dim() != 3:
            raise ValueError(f"code grids must be (B, h, w); got semantic {tuple(semantic_ids.shape)}, "
                             f"pixel {tuple(pixel_ids.shape)}")
        if semantic_ids.shape[0] != pixel_ids.shape[0]:
            raise ValueError(f"semantic and pixel grids have different batch sizes: "
                             f"{semantic_ids.shape[0]} vs {pixel_ids.shape[0]}")
        semantic = self.semantic_quantizer.lookup(semantic_ids)
        pixel = self.pixel_quantizer.lookup(pixel_ids)
        return fuse_code_maps(semantic, pixel).float()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor], quantizer: str | None = None) -> "CodeEmbedder":
        """From any state dict holding `[prefix.]semantic_quantizer.*` and `[prefix.]pixel_quantizer.*`
        (ours, a DualViTok's, or the authors' `pytorch_model.bin`); sizes are read off the tensors."""
        tensors: dict[str, dict[str, torch.Tensor]] = {b: {} for b in _BRANCHES}
        for key, value in state_dict.items():
            for branch in _BRANCHES:
                marker = f"{branch}."
                if key.startswith(marker) or f".{marker}" in key:
                    tensors[branch][key.split(marker, 1)[1]] = value
        for branch, found in tensors.items():
            if not found:
                raise KeyError(f"no '{branch}.*' tensors in the state dict (keys look like {list(state_dict)[:3]})")
        kind = quantizer or ("simvq" if "frozen_codebook" in tensors["semantic_quantizer"] else "vq")
        table = "frozen_codebook" if kind == "simvq" else "embedding.weight"
        try:
            config = CodeEmbedderConfig(semantic_codebook_size=tensors["semantic_quantizer"][table].shape[0],
                                        pixel_codebook_size=tensors["pixel_quantizer"][table].shape[0],
                                        code_dim=tensors["semantic_quantizer"][table].shape[1], quantizer=kind)
        except KeyError as e:
            raise KeyError(f"{kind} quantizer tensors lack {table!r}: {sorted(tensors['semantic_quantizer'])}") from e
        embedder = cls(config)
        for branch in _BRANCHES:
            getattr(embedder, branch).load_state_dict({k: v.float() for k, v in tensors[branch].items()})
        return embedder

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "CodeEmbedder":
        """Copy the codebooks of a DualViTok (any object with `semantic_quantizer`/`pixel_quantizer`).
        The tokenizer is left as it was: no dtype or device change."""
        state = {f"{branch}.{k}": v.detach().to("cpu", torch.float32, copy=True)
                 for branch in _BRANCHES for k, v in getattr(tokenizer, branch).state_dict().items()}
        return cls.from_state_dict(state)

    @classmethod
    def from_tokenizer_checkpoint(cls, path: str | os.PathLike) -> "CodeEmbedder":
        """Codebooks from a DualViTok checkpoint: the authors' `pytorch_model.bin` (the dict directly
        or under "ema"/"model"/"state_dict"), a .safetensors file, or a folder holding either."""
        path = Path(path)
        if path.is_dir():
            candidates = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) + sorted(path.glob("*.pt"))
            if not candidates:
                raise FileNotFoundError(f"no .safetensors/.bin/.pt weight file in {path}")
            errors = []
            for candidate in candidates:
                try:
                    return cls.from_tokenizer_checkpoint(candidate)
                except KeyError as e:
                    errors.append(f"{candidate.name}: {e}")
            raise KeyError(f"no file in {path} holds the two quantizers: {errors}")
        if path.suffix == ".safetensors":
            state = load_safetensors(path)
        else:
            state = torch_load_checkpoint(path)
            for wrapper in ("ema", "model", "state_dict"):
                if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
                    state = state[wrapper]
                    break
        return cls.from_state_dict(state)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        save_json(vars(self.config), directory / CONFIG_NAME)
        save_safetensors(self.state_dict(), directory / WEIGHTS_NAME)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "CodeEmbedder":
        directory = Path(directory)
        embedder = cls(CodeEmbedderConfig(**load_json(directory / CONFIG_NAME)))
        embedder.load_state_dict(load_safetensors(directory / WEIGHTS_NAME))
        return embedder


# ---------------------------------------------------------------------- size micro-conditioning
def size_condition_index(height: int, width: int, size_table: list, unknown_size: str = "nearest_aspect") -> int:
    """Index of the output size in the (width, height) table: the value of time id 5.

    A size outside the table takes the entry of closest aspect ratio (first on ties) unless
    `unknown_size == "error"`: the released decoder only ever saw the table's sizes."""
    for index, (table_width, table_height) in enumerate(size_table):
        if (table_width, table_height) == (width, height):
            return index
    if unknown_size == "error":
        raise ValueError(f"output size {height}x{width} (HxW) is not in the decoder's size table "
                         f"{[(h, w) for w, h in size_table]} (HxW)")
    log_aspect = math.log(width / height)
    distances = [abs(math.log(w / h) - log_aspect) for w, h in size_table]
    return min(range(len(size_table)), key=lambda i: (round(distances[i], 9), i))


def size_time_ids(index: int | torch.Tensor, batch_size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """SDXL add_time_ids reused as a size label: [0, 0, 0, 0, 0, index] per sample -> (B, 6)."""
    index = torch.as_tensor(index, device=device, dtype=dtype).reshape(-1)
    if index.numel() not in (1, batch_size):
        raise ValueError(f"got {index.numel()} size indices for a batch of {batch_size}")
    time_ids = torch.zeros(batch_size, 6, device=device, dtype=dtype)
    time_ids[:, 5] = index.expand(batch_size)
    return time_ids


def latent_conditioning(fused_codes: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
    """Nearest-resize the fused code map to the latent grid (4x the pixel-token grid)."""
    return F.interpolate(fused_codes, size=tuple(latent_size), mode="nearest")


# ---------------------------------------------------------------------- training-time conditioning
def perturb_token_ids(ids: torch.Tensor, codebook_size: int, sample_prob: float, token_prob: float,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace `token_prob` of the tokens of a random `sample_prob` of the samples by uniformly
    random codes, so the decoder tolerates the MLLM's sampling mistakes. Returns a new tensor."""
    if not (0.0 <= sample_prob <= 1.0 and 0.0 <= token_prob <= 1.0):
        raise ValueError(f"probabilities must lie in [0, 1], got sample {sample_prob}, token {token_prob}")
    b = ids.shape[0]
    perturbed_sample = torch.rand(b, generator=generator, device=ids.device) < sample_prob
    replace = torch.rand(ids.shape, generator=generator, device=ids.device) < token_prob
    replace &= perturbed_sample.view(b, *([1] * (ids.dim() - 1)))
    random_codes = torch.randint(0, codebook_size, ids.shape, generator=generator, device=ids.device)
    return torch.where(replace, random_codes, ids)


def drop_code_branches(fused_codes: torch.Tensor, semantic_channels: int, semantic_drop_prob: float,
                       pixel_drop_prob: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero each sample's semantic and pixel channels independently (classifier-free guidance
    training: at sampling time the unconditional row has all code channels zero)."""
    b = fused_codes.shape[0]
    keep_semantic = torch.rand(b, generator=generator, device=fused_codes.device) >= semantic_drop_prob
    keep_pixel = torch.rand(b, generator=generator, device=fused_codes.device) >= pixel_drop_prob
    channels = fused_codes.shape[1]
    keep = torch.cat([keep_semantic.view(b, 1).expand(b, semantic_channels),
                      keep_pixel.view(b, 1).expand(b, channels - semantic_channels)], dim=1)
    return fused_codes * keep.view(b, channels, 1, 1).to(fused_codes.dtype)
