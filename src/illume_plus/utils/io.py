"""File writing that survives being killed at any moment: write a temporary file, then rename."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
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
    try:
        tensors = load_file(str(path), device=str(device))
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise ValueError(f"cannot read weight file {path} (damaged or not safetensors): {_one_line(e)}") from None
    return {name: _aligned(tensor) for name, tensor in tensors.items()}


def _aligned(tensor: torch.Tensor, alignment: int = 64) -> torch.Tensor:
    """`tensor`, copied to fresh memory when its data does not start on an `alignment`-byte
    boundary. safetensors hands out CPU tensors at their file offsets (8 + header length + ...,
    rarely a multiple of 64); MKL's kernels pick code paths by alignment on some CPUs, so a
    model loaded with such weights (`load_state_dict(assign=True)`) computed results 1e-7 off
    those of the same weights in freshly allocated memory (bitwise reproducibility needs
    64-byte alignment, as MKL documents)."""
    if tensor.device.type != "cpu" or tensor.data_ptr() % alignment == 0:
        return tensor
    return tensor.clone()


def check_safetensors(path) -> None:
    """Raise ValueError naming `path` unless it holds a complete safetensors file: the header
    parses and the data it describes ends exactly at the end of the file (catches truncation
    without reading the tensors)."""
    path = Path(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise ValueError("shorter than a safetensors header")
            header_size = int.from_bytes(raw, "little")
            if header_size > size - 8:
                raise ValueError(f"header of {header_size} bytes does not fit in {size} bytes")
            header = json.loads(f.read(header_size))
        ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as e:
        raise ValueError(f"damaged weight file {path}: {_one_line(e)}") from None
    expected = 8 + header_size + max(ends, default=0)
    if size != expected:
        raise ValueError(f"damaged weight file {path}: {size} bytes, its header describes {expected} (truncated?)")


def check_torch_checkpoint(path) -> None:
    """Raise ValueError naming `path` unless its zip directory (torch.save's format) is complete:
    a truncated file loses the directory at its end. Cheap: reads no tensor data."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise ValueError(f"damaged checkpoint file {path}: {_one_line(e)}") from None


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
    try:
        return torch.load(str(path), map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, corrupt pickle, or an object weights_only refuses
        raise ValueError(f"cannot read checkpoint file {path}: {_one_line(e)}") from None


def _one_line(error: BaseException, limit: int = 400) -> str:
    return (" ".join(str(error).split()) or type(error).__name__)[:limit]
