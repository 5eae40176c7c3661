"""`illume-plus info [PATH]`: what a checkpoint folder holds (default: the packaged default model).

Parts, their kind (ours or the authors'), size on disk, parameter counts read from the
weight files' headers (nothing is loaded), the preset a config matches, and the card.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..pipeline_folder import (CARD_NAME, DEFAULT_MODEL_DIR, KIND_DECODER, KIND_MLLM, KIND_OFFICIAL_MLLM,
                               KIND_OFFICIAL_TOKENIZER, KIND_PIPELINE, KIND_RELEASE, KIND_TOKENIZER, PARTS,
                               _release_parts, detect)
from .options import ArgumentParser

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def disk_size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def parameter_count(path: Path) -> int | None:
    """Elements in the weight files under `path`, from safetensors headers (or a memory-mapped
    torch load for .bin/.pt); None when there are none."""
    files = [path] if path.is_file() else [f for f in sorted(path.rglob("*")) if f.suffix in _WEIGHT_SUFFIXES]
    if not files:
        return None
    total = 0
    for file in files:
        if file.suffix == ".safetensors":
            with open(file, "rb") as f:
                header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
            for key, entry in header.items():
                if key != "__metadata__":
                    count = 1
                    for dim in entry["shape"]:
                        count *= dim
                    total += count
        else:
            import torch

            state = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
            state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else {}
            total += sum(t.numel() for t in state.values() if hasattr(t, "numel"))
    return total


def matching_preset(config_file: Path) -> str | None:
    """The name of the MLLM or DualViTok preset a config.json equals, if any."""
    from ..mllm.config import PRESETS as MLLM_PRESETS, IllumePlusConfig
    from ..tokenizer.config import PRESETS as TOKENIZER_PRESETS, DualViTokConfig

    raw = json.loads(config_file.read_text())
    try:
        if "text_vocab_rows" in raw:
            config = IllumePlusConfig.from_dict(raw)
            return next((n for n in MLLM_PRESETS if IllumePlusConfig.from_name(n) == config), None)
        config = DualViTokConfig.from_dict(raw)
        return next((n for n in TOKENIZER_PRESETS if DualViTokConfig.from_name(n) == config), None)
    except (TypeError, ValueError):
        return None


def describe(path: Path) -> list[str]:
    kind = detect(path)
    lines = [f"{path}: {kind}, {disk_size(path) / 1e6:,.1f} MB"]
    if kind == KIND_PIPELINE:
        card = json.loads((path / CARD_NAME).read_text())
        lines.append(f"  card: trained={card.get('trained')}  default size {card.get('default_size')}  "
                     f"{card.get('description', '')}".rstrip())
        parts = {part: path / sub for part, sub in PARTS.items() if (path / sub).exists()}
    elif kind == KIND_RELEASE:
        parts = _release_parts(path)
    else:
        parts = {kind: path}
    for part, part_path in parts.items():
        lines.append("  " + _part_line(part, part_path))
    if kind == KIND_PIPELINE and "diffusion_decoder" not in parts:
        lines.append("  diffusion_decoder: none (images decode with DualViTok's pixel decoder)")
    return lines


def _part_line(part: str, path: Path) -> str:
    kind = detect(path)
    params = parameter_count(path)
    preset = matching_preset(path / "config.json") if kind in (KIND_MLLM, KIND_TOKENIZER) else None
    bits = [f"{part}: {path.name} ({kind})", f"{disk_size(path) / 1e6:,.1f} MB"]
    if params is not None:
        bits.append(f"{params:,} parameters (buffers included)")
    if preset:
        bits.append(f"preset {preset!r}")
    elif kind in (KIND_MLLM, KIND_TOKENIZER):
        bits.append("custom config")
    if kind == KIND_OFFICIAL_MLLM:
        bits.append("load as the authors' format")
    if kind == KIND_OFFICIAL_TOKENIZER:
        bits.append("read with the 'illume-plus' preset")
    if kind == KIND_DECODER:
        bits.append("ours" if (path / "code_embedder").is_dir() else "the authors' (codebooks from DualViTok)")
    return ",  ".join(bits)


def main(argv: list[str]) -> int:
    p = ArgumentParser(prog="illume-plus info", description=__doc__.split("\n\n")[0])
    p.add_argument("path", type=Path, nargs="?", default=DEFAULT_MODEL_DIR)
    args = p.parse_args(argv)
    print("\n".join(describe(args.path)))
    return 0
