"""File writing that survives being killed at any moment: write a temporary file, then rename."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_json(obj, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def load_json(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing JSON file: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e


def save_safetensors(state_dict: dict[str, torch.Tensor], path, metadata: dict | None = None) -> None:
    # safetensors refuses shared or non-contiguous storage: give it plain copies.
    tensors = {k: v.detach().contiguous().clone() if v.data_ptr() in _shared(state_dict) else v.detach().contiguous()
               for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_safetensors(path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing weight file: {path}")
    return load_file(str(path), device=str(device))


def _shared(state_dict) -> set[int]:
    seen, shared = set(), set()
    for v in state_dict.values():
        ptr = v.data_ptr()
        (shared if ptr in seen else seen).add(ptr)
    return shared


def torch_load_checkpoint(path, map_location="cpu"):
    """Read a PyTorch pickle checkpoint safely (tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing checkpoint file: {path}")
    return torch.load(str(path), map_location=map_location, weights_only=True)
