"""Training checkpoints that survive being killed at any moment, and exact resume.

Layout of a run's checkpoint directory:

    checkpoints/
      latest                    text file: name of the newest complete checkpoint
      step_00001000/
        model.safetensors       one .safetensors per named tensor dict (model, ema, discriminator...)
        ema.safetensors
        training_state.pt       optimisers, schedulers, step, sampler position, config... (rank 0)
        rank_00000.pt           RNG states of each process (python, numpy, torch, cuda)
        rank_00001.pt

A checkpoint is written into a hidden temporary directory and renamed into place only when
every file (from every rank) is there, then `latest` is replaced atomically; so a crash leaves
either the previous checkpoint or the new one, never half of one. Older ones beyond
`keep_last` are deleted.
"""

from __future__ import annotations

import logging
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from ..utils.io import atomic_path, load_safetensors, save_safetensors, torch_load_checkpoint
from .distributed import barrier, get_rank, get_world_size

logger = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step_(\d+)$")


# ----------------------------------------------------------------------------- RNG state
def capture_rng_state() -> dict:
    """RNG states of this process in plain containers (loadable with weights_only=True)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- checkpoints
class Checkpoint:
    """A complete checkpoint directory, read lazily."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"checkpoint directory not found: {self.path}")

    @property
    def step(self) -> int:
        match = _STEP_DIR.match(self.path.name)
        return int(match.group(1)) if match else int(self.training_state().get("step", 0))

    def tensors(self, name: str) -> dict[str, torch.Tensor]:
        return load_safetensors(self.path / f"{name}.safetensors")

    def has(self, name: str) -> bool:
        return (self.path / f"{name}.safetensors").is_file()

    def training_state(self) -> dict:
        return torch_load_checkpoint(self.path / "training_state.pt")

    def rank_state(self, rank: int | None = None) -> dict | None:
        """This rank's RNG state; None when the run was saved with fewer processes."""
        path = self.path / f"rank_{get_rank() if rank is None else rank:05d}.pt"
        return torch_load_checkpoint(path) if path.is_file() else None


class CheckpointManager:
    def __init__(self, directory: str | Path, keep_last: int = 3):
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.directory = Path(directory)
        self.keep_last = keep_last

    def save(self, step: int, tensors: dict[str, dict[str, torch.Tensor]], training_state: dict,
             rank_state: dict | None = None) -> Path:
        """Collective: every rank calls it. `tensors` and `training_state` are taken from rank 0;
        `rank_state` (default: this process's RNG states) is saved for each rank."""
        rank = get_rank()
        final = self.directory / f"step_{step:08d}"
        staging = self.directory / f".staging_step_{step:08d}"
        if rank == 0:
            if staging.exists():
                shutil.rmtree(staging)  # left over from a crash
            staging.mkdir(parents=True)
        barrier()
        with atomic_path(staging / f"rank_{rank:05d}.pt") as tmp:
            torch.save(capture_rng_state() if rank_state is None else rank_state, tmp)
        barrier()
        if rank == 0:
            for name, state_dict in tensors.items():
                save_safetensors(state_dict, staging / f"{name}.safetensors")
            with atomic_path(staging / "training_state.pt") as tmp:
                torch.save({**training_state, "step": step, "world_size": get_world_size()}, tmp)
            if final.exists():  # same step saved again (e.g. final save right after a periodic one)
                shutil.rmtree(final)
            staging.rename(final)
            with atomic_path(self.directory / "latest") as tmp:
                tmp.write_text(final.name + "\n")
            self._prune()
        barrier()
        return final

    def checkpoints(self) -> list[Path]:
        """Complete checkpoint directories, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]
        return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))

    def latest(self) -> Checkpoint | None:
        pointer = self.directory / "latest"
        if pointer.is_file():
            path = self.directory / pointer.read_text().strip()
            if path.is_dir():
                return Checkpoint(path)
            logger.warning("%s points to missing %s; using the newest step directory", pointer, path)
        found = self.checkpoints()
        return Checkpoint(found[-1]) if found else None

    def _prune(self) -> None:
        for path in self.checkpoints()[:-self.keep_last]:
            shutil.rmtree(path, ignore_errors=True)
