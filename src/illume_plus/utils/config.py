"""Helpers shared by the config dataclasses."""

from __future__ import annotations

from dataclasses import fields


def check_known_fields(cls, values: dict) -> None:
    """A config read from a file must not carry keys its dataclass does not know (typos would
    otherwise be ignored silently)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {unknown}; known: {sorted(known)}")
