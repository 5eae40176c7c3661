"""Checkpoints of sharded training state with torch.distributed.checkpoint (DCP).

Same directory layout and guarantees as `checkpoint.CheckpointManager` (staging directory renamed
into place when complete, `latest` pointer, keep-last-N), with the tensors written by DCP: every
process writes its own shards of the model, the optimiser state (and EMA) in parallel, and a
later run may load them with a different number of processes (DCP reshards).

    checkpoints/step_00001000/
        dcp/                  DCP files (.metadata + one file per process)
        training_state.pt     scheduler, data position, counters, config (rank 0)
        rank_00000.pt ...     each process's RNG states

`get_state_dict` / `set_state_dict` (torch.distributed.checkpoint.state_dict) turn FSDP2 modules
and their optimiser into FQN-keyed state; with one unsharded process the same calls work on the
plain model, and DCP runs without a process group.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from ..utils.io import atomic_path
from .checkpoint import Checkpoint, CheckpointManager, capture_rng_state
from .distributed import barrier, get_rank, get_world_size

DCP_DIR = "dcp"


class ShardedCheckpointManager(CheckpointManager):
    def save_sharded(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     training_state: dict, extra_tensors: dict | None = None,
                     rank_state: dict | None = None) -> Path:
        """Collective. `extra_tensors`: more (possibly sharded) tensor dicts, e.g. {"ema": shadow}."""
        rank = get_rank()
        staging = self._open_staging(step)
        model_state, optimizer_state = get_state_dict(model, optimizer)
        dcp.save({"model": model_state, "optimizer": optimizer_state, **(extra_tensors or {})},
                 checkpoint_id=str(staging / DCP_DIR))
        with atomic_path(staging / f"rank_{rank:05d}.pt") as tmp:
            torch.save(capture_rng_state() if rank_state is None else rank_state, tmp)
        barrier()
        if rank == 0:
            with atomic_path(staging / "training_state.pt") as tmp:
                torch.save({**training_state, "step": step, "world_size": get_world_size()}, tmp)
            self._publish(step, staging)
        barrier()
        return self.directory / f"step_{step:08d}"

    @staticmethod
    def load_sharded(checkpoint: Checkpoint, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     extra_tensors: dict | None = None) -> None:
        """Collective: load model and optimiser state (and `extra_tensors`, in place) from `checkpoint`."""
        model_state, optimizer_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optimizer": optimizer_state, **(extra_tensors or {})}
        dcp.load(state, checkpoint_id=str(checkpoint.path / DCP_DIR))
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


__all__ = ["ShardedCheckpointManager", "DCP_DIR"]
