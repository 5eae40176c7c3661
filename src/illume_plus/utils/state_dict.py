"""Strict loading: every checkpoint tensor consumed, every model tensor filled, or a clear error."""

from __future__ import annotations

from torch import nn


def check_state_dict_keys(model: nn.Module, state_dict: dict, what: str = "the model config") -> None:
    """Raise a ValueError listing missing keys, unexpected keys and shape mismatches."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in sorted(set(expected) & set(state_dict)) if state_dict[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        for name, items in (("missing keys", missing), ("unexpected keys", unexpected),
                            ("shape mismatches", mismatched)):
            if items:
                shown = "\n  ".join(items[:20]) + (f"\n  ... ({len(items) - 20} more)" if len(items) > 20 else "")
                parts.append(f"{len(items)} {name}:\n  {shown}")
        raise ValueError(f"checkpoint does not match {what}:\n" + "\n".join(parts))


def check_materialized(model: nn.Module) -> None:
    """After loading a model built on the meta device: nothing may be left without data."""
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:
        raise RuntimeError(f"tensors left uninitialised after loading: {leftover[:10]}")
