"""What trains in each MLLM stage, at which learning rate (SPEC §3 "Training stages").

A stage is a list of parameter groups, each a set of name patterns (regular expressions matched
at the start of a parameter's name) with its own learning rate. A parameter takes the first
group that matches; parameters matched by none are frozen. The configs in configs/mllm/ spell
out the paper's stages:

    stage 1  adaptors (1e-3); the image rows of the embedding and LM head (2e-4)
    stage 2  adaptors + the LLM (5e-5)
    stage 3  adaptors + the LLM (2e-5); ViT blocks from 16 up + merger, and the pixel
             encoder outside its down path (2e-6)

`rows: image` restricts a group's update to the rows of the image vocabulary (the embedding and
the LM head): the text rows' gradients are zeroed after backward (`RowMasks.apply`), so AdamW
without weight decay leaves them bit-for-bit unchanged. A gradient mask, not requires_grad:
with tied embeddings the text and image rows are one tensor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class ParamGroupConfig:
    name: str
    patterns: list
    lr: float
    rows: str = "all"  # "all" | "image": only the image vocabulary's rows (embedding / LM head) update

    def __post_init__(self):
        if self.rows not in ("all", "image"):
            raise ValueError(f"group {self.name!r}: rows must be 'all' or 'image', got {self.rows!r}")
        if not self.patterns:
            raise ValueError(f"group {self.name!r} has no patterns")
        if self.lr <= 0:
            raise ValueError(f"group {self.name!r}: lr must be positive, got {self.lr}")


@dataclass
class StageSection:
    name: str = "stage1"
    groups: list = field(default_factory=list)  # ParamGroupConfig dicts
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0  # the paper: none
    schedule: str = "constant"  # "constant" | "cosine" (after a linear warmup)
    warmup_ratio: float = 0.0  # fraction of max_steps (the release: 0.03)
    min_lr_ratio: float = 0.0

    def parameter_groups(self) -> list[ParamGroupConfig]:
        groups = [g if isinstance(g, ParamGroupConfig) else ParamGroupConfig(**g) for g in self.groups]
        if not groups:
            raise ValueError(f"stage {self.name!r} trains nothing: give stage.groups")
        return groups


def assign_groups(model: nn.Module, groups: list[ParamGroupConfig]) -> dict[str, ParamGroupConfig]:
    """Set requires_grad from the stage (True for matched parameters, False for the rest) and
    return {parameter name: its group}. A group that matches nothing is an error (a typo)."""
    compiled = [(g, [re.compile(p) for p in g.patterns]) for g in groups]
    chosen, used = {}, set()
    for name, param in model.named_parameters():
        group = next((g for g, regexes in compiled if any(r.match(name) for r in regexes)), None)
        param.requires_grad_(group is not None)
        if group is not None:
            chosen[name] = group
            used.add(group.name)
    unused = [g.name for g in groups if g.name not in used]
    if unused:
        raise ValueError(f"stage parameter group(s) {unused} match no parameter of the model")
    return chosen


def build_stage_optimizer(model: nn.Module, chosen: dict[str, ParamGroupConfig],
                          stage: StageSection) -> torch.optim.AdamW:
    """AdamW with one optimiser group per stage group, each at its own learning rate."""
    by_group: dict[str, list] = {}
    for name, param in model.named_parameters():  # after sharding: the same names, DTensor params
        if name in chosen:
            by_group.setdefault(chosen[name].name, []).append(param)
    lrs = {g.name: g.lr for g in chosen.values()}
    return torch.optim.AdamW(
        [{"params": params, "lr": lrs[name], "name": name} for name, params in by_group.items()],
        betas=tuple(stage.betas), eps=stage.eps, weight_decay=stage.weight_decay)


def image_vocab_rows(layout, num_rows: int) -> torch.Tensor:
    """(num_rows,) bool: the embedding rows of the image vocabulary (structural tokens,
    resolution tags, both code ranges), read from the token layout."""
    ids = [*layout.structural_ids, *(t for _, t in layout.height_tags), *(t for _, t in layout.width_tags)]
    mask = torch.zeros(num_rows, dtype=torch.bool)
    mask[torch.tensor(ids)] = True
    mask[slice(*layout.semantic_range)] = True
    mask[slice(*layout.pixel_range)] = True
    return mask


class RowMasks:
    """Zero the text rows' gradients of the `rows: image` parameters (embedding, LM head)."""

    def __init__(self, model: nn.Module, chosen: dict[str, ParamGroupConfig], layout):
        self.masks = {}  # parameter name -> (rows, 1) bool mask of the rows that may change
        for name, param in model.named_parameters():
            group = chosen.get(name)
            if group is None or group.rows != "image":
                continue
            if param.dim() != 2 or not name.endswith(("embed_tokens.weight", "lm_head.weight")):
                raise ValueError(f"rows: image applies to the embedding and LM head only, not {name}")
            self.masks[name] = image_vocab_rows(layout, param.shape[0])[:, None]
        self.masked = []

    def place(self, model: nn.Module) -> None:
        """Pair each mask with its parameter as the model holds it now: call after sharding, which
        replaces the parameters (FSDP2: DTensor shards of rows), and shard the mask alike."""
        params = dict(model.named_parameters())
        self.masked = []
        for name, mask in self.masks.items():
            param = params[name]
            if _is_dtensor(param):
                from torch.distributed.tensor import distribute_tensor

                mask = distribute_tensor(mask.to(param.to_local().device), param.device_mesh, param.placements)
            else:
                mask = mask.to(param.device)
            self.masked.append((param, mask))

    @torch.no_grad()
    def apply(self) -> None:
        for param, mask in self.masked:
            if param.grad is not None:
                param.grad.masked_fill_(~mask, 0.0)


def _is_dtensor(tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


__all__ = ["ParamGroupConfig", "StageSection", "assign_groups", "build_stage_optimizer", "RowMasks",
           "image_vocab_rows"]
