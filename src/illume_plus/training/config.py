"""Recipe configs: YAML files mapped onto nested dataclasses, with `key.sub=value` overrides.

A recipe declares its config as dataclasses (sections) whose fields may themselves be
dataclasses. `load_config(Recipe, "x.yaml", ["train.max_steps=10"])` reads the YAML, applies
the overrides to the raw mapping (values parsed as YAML, so `10`, `1e-4`, `[1, 2]`, `null`
work), then builds the dataclasses; an unknown key anywhere is an error naming its section.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path

import yaml


def parse_overrides(overrides: list[str]) -> list[tuple[list[str], object]]:
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ValueError(f"override {item!r} must look like section.key=value")
        parsed.append((key.split("."), yaml.safe_load(raw) if raw else None))
    return parsed


def apply_overrides(mapping: dict, overrides: list[str]) -> dict:
    """Set each `a.b.c=value` in a nested dict (creating missing levels), in order."""
    for path, value in parse_overrides(overrides):
        node = mapping
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ValueError(f"override {'.'.join(path)}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return mapping


def from_dict(cls, values: dict | None, where: str = "config"):
    """Build dataclass `cls` from a mapping, recursing into dataclass-typed fields."""
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a mapping, got {type(values).__name__}")
    if hasattr(cls, "from_dict") and where != "config":
        return cls.from_dict(values)  # sections that validate themselves
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown keys in {where}: {unknown}; known: {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        field_type = hints.get(name)
        if dataclasses.is_dataclass(field_type) and (isinstance(value, dict) or value is None):
            value = from_dict(field_type, value, f"{where}.{name}" if where != "config" else name)
        kwargs[name] = value
    return cls(**kwargs)


def to_dict(config) -> dict:
    """Plain nested dict (YAML/JSON-serialisable) of a config dataclass."""
    return yaml.safe_load(yaml.safe_dump(_plain(config)))


def _plain(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def load_config(cls, path: str | Path | None, overrides: list[str] = ()):
    """Read YAML `path` (or start from defaults when None), apply overrides, build `cls`."""
    raw = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: top level must be a mapping of sections")
    return from_dict(cls, apply_overrides(raw, list(overrides)))


def parse_recipe_args(cls, argv: list[str] | None, prog: str, description: str, example: str):
    """A recipe's command line, `CONFIG [section.key=value ...]`, read into config dataclass `cls`."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("config", help=f"YAML recipe, e.g. {example}")
    parser.add_argument("overrides", nargs="*", help="section.key=value (value parsed as YAML)")
    args = parser.parse_args(argv)
    return load_config(cls, args.config, args.overrides)
