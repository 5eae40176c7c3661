"""FSDP2 for the MLLM: `fully_shard` on every decoder layer, then on the root.

Each decoder layer is one communication group (its parameters all-gathered just before it runs
and freed after); the root group holds the rest: embedding / LM head (tied in the 3B model, so
they must share a group), final norm, adaptors and the vision encoders. The encoders stay in the
root group on purpose: a rank whose batch has no image never runs them, and a group that runs
on some ranks only would leave the others waiting in its all-gather.

On GPUs the policy computes in bf16 and reduces gradients in fp32; parameters and optimiser
state stay fp32 shards. On CPU (gloo, the tests) everything stays fp32.
"""

from __future__ import annotations

import torch
from torch import nn


def shard_model(model: nn.Module, device: torch.device, bf16: bool) -> nn.Module:
    """Apply FSDP2 in place (every process of the default group is one data-parallel replica)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 \
        else MixedPrecisionPolicy()
    for layer in model.language_model.model.layers:
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Collective: the whole model's state dict as plain CPU tensors, on rank 0 (empty elsewhere)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """A plain tensor from a (possibly sharded) one (collective for DTensors)."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


__all__ = ["shard_model", "full_state_dict", "full_tensor"]
