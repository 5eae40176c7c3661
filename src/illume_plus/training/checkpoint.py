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

Damage from outside (a disk filling up, a copy cut short, a hand-edited `latest`) is caught on
resume: `CheckpointManager.latest()` checks each candidate's files (cheaply: safetensors sizes
against their headers, torch zip directories) and falls back to the newest intact step with a
warning that names the damaged file. The run then continues from there; the next save moves
the abandoned newer steps aside (`abandoned_step_*`), so they can never outrank the new ones.
"""

from __future__ import annotations

import logging
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from ..utils.io import (atomic_path, check_safetensors, check_torch_checkpoint, load_safetensors, save_safetensors,
                        torch_load_checkpoint)
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

    def verify(self) -> None:
        """Raise ValueError naming the first missing or damaged file (structure only: no
        tensor data is read, so this is cheap even for large checkpoints)."""
        state = self.path / "training_state.pt"
        if not state.is_file():
            raise ValueError(f"incomplete checkpoint {self.path}: training_state.pt is missing")
        check_torch_checkpoint(state)
        for path in sorted(self.path.glob("rank_*.pt")):
            check_torch_checkpoint(path)
        for path in sorted(self.path.glob("*.safetensors")):
            check_safetensors(path)
        if (self.path / "dcp").is_dir() and not (self.path / "dcp" / ".metadata").is_file():
            raise ValueError(f"incomplete checkpoint {self.path}: dcp/.metadata is missing")  # sharded_checkpoint.py


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
        staging = self._open_staging(step)
        with atomic_path(staging / f"rank_{rank:05d}.pt") as tmp:
            torch.save(capture_rng_state() if rank_state is None else rank_state, tmp)
        barrier()
        if rank == 0:
            for name, state_dict in tensors.items():
                save_safetensors(state_dict, staging / f"{name}.safetensors")
            with atomic_path(staging / "training_state.pt") as tmp:
                torch.save({**training_state, "step": step, "world_size": get_world_size()}, tmp)
            self._publish(step, staging)
        barrier()
        return self.directory / f"step_{step:08d}"

    def _open_staging(self, step: int) -> Path:
        """Collective: an empty staging folder for `step` (rank 0 makes it; all ranks wait)."""
        staging = self.directory / f".staging_step_{step:08d}"
        if get_rank() == 0:
            if staging.exists():
                shutil.rmtree(staging)  # left over from a crash
            staging.mkdir(parents=True)
        barrier()
        return staging

    def _publish(self, step: int, staging: Path) -> None:
        """Rank 0: the complete staging folder becomes step_N atomically, `latest` names it, old
        steps are pruned."""
        final = self.directory / f"step_{step:08d}"
        if final.exists():  # same step saved again (e.g. final save right after a periodic one)
            shutil.rmtree(final)
        staging.rename(final)
        with atomic_path(self.directory / "latest") as tmp:
            tmp.write_text(final.name + "\n")
        self._prune(step)

    def checkpoints(self) -> list[Path]:
        """Complete checkpoint directories, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]
        return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))

    def latest(self) -> Checkpoint | None:
        """The newest intact checkpoint: the one `latest` names, else (warning which file is
        damaged) the newest step directory that passes `Checkpoint.verify`. None when there are
        no checkpoints; ValueError naming the damage when there are some but none is intact
        (starting from scratch would silently throw the run away)."""
        candidates = list(reversed(self.checkpoints()))
        pointed = self._pointer_target()
        if pointed is not None and pointed in candidates:
            candidates.remove(pointed)
            candidates.insert(0, pointed)
        damage = []
        for path in candidates:
            checkpoint = Checkpoint(path)
            try:
                checkpoint.verify()
            except ValueError as e:
                logger.warning("skipping damaged checkpoint: %s; falling back to an older one", e)
                damage.append(str(e))
                continue
            return checkpoint
        if damage:
            raise ValueError(f"no intact checkpoint in {self.directory}: {damage[0]}"
                             + (f" (and {len(damage) - 1} more damaged)" if len(damage) > 1 else ""))
        return None

    def _pointer_target(self) -> Path | None:
        pointer = self.directory / "latest"
        if not pointer.is_file():
            return None
        try:
            name = pointer.read_text(encoding="utf-8").strip()
        except (UnicodeDecodeError, OSError) as e:
            logger.warning("%s is unreadable (%s); using the newest step directory", pointer, e)
            return None
        path = self.directory / name
        if not name or not _STEP_DIR.match(name) or not path.is_dir():
            logger.warning("%s names %r, which is no checkpoint here; using the newest step directory", pointer, name)
            return None
        return path

    def _prune(self, saved_step: int) -> None:
        """Keep the `keep_last` newest checkpoints up to `saved_step`. Steps after it belong to an
        attempt this run abandoned (it resumed from an older step, e.g. past a damaged one):
        they are renamed `abandoned_step_*` so they never outrank the new ones."""
        kept = []
        for path in self.checkpoints():
            if int(_STEP_DIR.match(path.name).group(1)) > saved_step:
                aside = path.with_name(f"abandoned_{path.name}")
                if aside.exists():
                    shutil.rmtree(aside, ignore_errors=True)
                logger.warning("moving %s (newer than the resumed run) aside to %s", path, aside.name)
                path.rename(aside)
            else:
                kept.append(path)
        for path in kept[:-self.keep_last]:
            shutil.rmtree(path, ignore_errors=True)
