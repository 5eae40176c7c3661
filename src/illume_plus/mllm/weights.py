"""Reading the weight files of a checkpoint folder (safetensors or .bin, single or sharded).

Shared by the loaders of our format's base models and of the authors' release (`official.py`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..utils.io import load_json, load_safetensors, torch_load_checkpoint

WRAPPER_KEYS = ("state_dict", "model", "module")  # a .bin may wrap its dict under one of these


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a checkpoint folder: the shards of an index json, else a single file."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            weight_map = load_json(index).get("weight_map")
            if not weight_map:
                raise ValueError(f"{index} has no weight_map")
            return [folder / name for name in sorted(set(weight_map.values()))]
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (folder / single).is_file():
            return [folder / single]
    found = sorted(p.name for p in folder.iterdir())
    raise FileNotFoundError(f"no weights in {folder}: expected model.safetensors, pytorch_model.bin or a "
                            f"*.index.json with shards; found {found}")


def read_weights(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint folder (.safetensors, or .bin read with weights_only)."""
    folder = Path(folder)
    state_dict: dict[str, torch.Tensor] = {}
    for path in weight_files(folder):
        if not path.is_file():
            raise FileNotFoundError(f"shard listed in the index is missing: {path}")
        shard = load_safetensors(path) if path.suffix == ".safetensors" else _unwrap(torch_load_checkpoint(path))
        duplicated = set(shard) & set(state_dict)
        if duplicated:
            raise ValueError(f"keys appear in more than one shard: {sorted(duplicated)[:5]}")
        state_dict.update(shard)
    return state_dict


def _unwrap(checkpoint) -> dict:
    for key in WRAPPER_KEYS:
        if isinstance(checkpoint, dict) and key in checkpoint and isinstance(checkpoint[key], dict):
            return checkpoint[key]
    return checkpoint


__all__ = ["read_weights", "weight_files"]
