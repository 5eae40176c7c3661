"""LPIPS (Zhang et al. 2018, v0.1) on VGG16 features: the perceptual term of the tokenizer loss.

The feature network and the linear heads are written here; their parameter names are those of
the two public weight files, so both load strictly from local paths:

- torchvision's ImageNet `vgg16` file: `features.{0,2,5,...,28}.{weight,bias}` (the
  `classifier.*` entries are not needed and are skipped);
- LPIPS v0.1 `vgg.pth`: `lin{0..4}.model.1.weight`, shapes [1, C, 1, 1].

Distance = sum over relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of the spatial mean of
lin_k((f_k(x)/|f_k(x)| - f_k(y)/|f_k(y)|)^2), with unit-normalisation over channels.
Inputs are images in [-1, 1].
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from illume_plus.utils.io import load_safetensors, torch_load_checkpoint

# LPIPS v0.1 input scaling: maps [-1, 1] images to ImageNet-normalised VGG input.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)

# VGG16 "D" configuration: conv widths per stage; "M" is a 2x2 max pool.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# Index in `features` just after the ReLU closing each stage: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
LPIPS_TAPS = (4, 9, 16, 23, 30)
LPIPS_CHANNELS = (64, 128, 256, 512, 512)


def _vgg16_features() -> nn.Sequential:
    """torchvision-indexed VGG16 `features` up to relu5_3 (the final max pool is not needed)."""
    layers: list[nn.Module] = []
    in_channels = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, item, kernel_size=3, padding=1), nn.ReLU()]
            in_channels = item
    return nn.Sequential(*layers)


class LinearHead(nn.Module):
    """One LPIPS linear layer: a 1x1 conv to one channel. `model.0` is the dropout used when
    LPIPS was calibrated (identity here, LPIPS stays in eval); `model.1` carries the weight."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _unit_normalize(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    norm = torch.sqrt(torch.sum(features * features, dim=1, keepdim=True))
    return features / (norm + eps)


class LPIPS(nn.Module):
    """Frozen LPIPS-VGG16. `forward(x, y)` -> (B,) distances; gradients flow to the inputs only."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.features = _vgg16_features()
        for k, channels in enumerate(LPIPS_CHANNELS):
            self.add_module(f"lin{k}", LinearHead(channels))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "LPIPS":
        # A frozen metric: a parent's .train() must not switch on the heads' dropout.
        return super().train(False)

    @classmethod
    def from_pretrained(cls, vgg_path: str | Path, lin_path: str | Path) -> "LPIPS":
        """Load torchvision's `vgg16` weights and LPIPS v0.1 `vgg.pth` from local files (strict)."""
        model = cls()
        vgg_state = _read_state_dict(vgg_path, "VGG16 weights")
        features = {k: v for k, v in vgg_state.items() if not k.startswith("classifier.")}
        _load_strict(nn.ModuleDict({"features": model.features}), features, vgg_path)
        lin_state = _read_state_dict(lin_path, "LPIPS linear weights")
        heads = nn.ModuleDict({f"lin{k}": getattr(model, f"lin{k}") for k in range(len(LPIPS_CHANNELS))})
        _load_strict(heads, lin_state, lin_path)
        return model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS expects two (B, 3, H, W) images of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        b = x.shape[0]
        # One pass over both images: the VGG sees a batch of 2B.
        h = (torch.cat([x, y]) - self.shift.to(x.dtype)) / self.scale.to(x.dtype)
        distance = x.new_zeros(b, dtype=torch.float32)
        start = 0
        for k, stop in enumerate(LPIPS_TAPS):
            h = self.features[start:stop](h)
            start = stop
            fx, fy = _unit_normalize(h.float()).split(b)
            per_pixel = getattr(self, f"lin{k}")((fx - fy).square().to(h.dtype))
            distance = distance + per_pixel.float().mean(dim=(1, 2, 3))
        return distance


def build_perceptual_loss(vgg_path: str | Path | None = None, lin_path: str | Path | None = None) -> LPIPS | None:
    """LPIPS from local files, or None (with a warning) when either path is not given.

    Random VGG weights would give a meaningless loss, so there is no such fallback.
    """
    if vgg_path is None or lin_path is None:
        warnings.warn(
            "perceptual (LPIPS) loss is OFF: pass both the torchvision vgg16 weight file and the "
            f"LPIPS v0.1 vgg.pth file to enable it (got vgg_path={vgg_path!r}, lin_path={lin_path!r})",
            stacklevel=2,
        )
        return None
    return LPIPS.from_pretrained(vgg_path, lin_path)


def _read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    state = torch_load_checkpoint(path)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], path) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                   for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong_shape:
        raise ValueError(f"{path}: weights do not match the model; missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, wrong shapes {wrong_shape[:5]}")
    module.load_state_dict(state, strict=True)
