"""The authors' released MLLM checkpoints -> IllumePlus, loaded strictly.

Two folder layouts hold the same tensors under the same names (SPEC §3):
- origin format (`illume_plus-qwen2_5-3b`): config.json + `pytorch_model*.bin` or
  `model*.safetensors` (one file, or shards listed by a `*.index.json`);
- transformers remote-code format (`-hf`): config.json (LLM fields possibly nested under
  `text_config`) + safetensors shards + the extended tokenizer.

Their key names and ours:
    model.embed_tokens.* / model.layers.* / model.norm.*  -> language_model.model.*
    lm_head.weight                                         -> language_model.lm_head.weight
    model.vision_tower.semantic_encoder.* (the ViT)        -> vision_tower.semantic_encoder.*
    model.vision_tower.pixel_encoder.*                     -> vision_tower.pixel_encoder.*
    model.mm_projector.projector_1.{0,2}.* (semantic)      -> semantic_adaptor.{0,2}.*
    model.mm_projector.projector_2.{0,2}.* (pixel)         -> pixel_adaptor.{0,2}.*
Every checkpoint key must map and every model tensor must be filled; otherwise a ValueError
lists what is missing or unexpected.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ..tokenizer.config import DualViTokConfig
from ..utils.io import load_json, load_safetensors, torch_load_checkpoint
from .config import IllumePlusConfig
from .vocab import num_added_tokens

# (pattern on their key, replacement giving ours); first match wins.
KEY_RULES = (
    (re.compile(r"^model\.vision_tower\.semantic_encoder\."), "vision_tower.semantic_encoder."),
    (re.compile(r"^model\.vision_tower\.pixel_encoder\."), "vision_tower.pixel_encoder."),
    (re.compile(r"^model\.mm_projector\.projector_1\."), "semantic_adaptor."),
    (re.compile(r"^model\.mm_projector\.projector_2\."), "pixel_adaptor."),
    (re.compile(r"^model\.(embed_tokens|layers|norm)\."), r"language_model.model.\1."),
    (re.compile(r"^lm_head\."), "language_model.lm_head."),
)
WRAPPER_KEYS = ("state_dict", "model", "module")  # a .bin may wrap its dict under one of these
LLM_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "intermediate_size", "rope_theta", "rms_norm_eps", "tie_word_embeddings", "max_position_embeddings",
              "hidden_act")


def convert_official_key(key: str) -> str | None:
    """Our name for one of their keys, or None when no rule applies."""
    for pattern, replacement in KEY_RULES:
        if pattern.match(key):
            return pattern.sub(replacement, key, count=1)
    return None


def convert_official_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename every key; raise listing the keys no rule knows (nothing is dropped silently)."""
    converted, unknown = {}, []
    for key, tensor in state_dict.items():
        ours = convert_official_key(key)
        if ours is None:
            unknown.append(key)
        else:
            converted[ours] = tensor
    if unknown:
        shown = "\n  ".join(unknown[:20]) + (f"\n  ... ({len(unknown) - 20} more)" if len(unknown) > 20 else "")
        raise ValueError(f"{len(unknown)} checkpoint keys have no counterpart in IllumePlus:\n  {shown}")
    return converted


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a checkpoint folder: the shards of an index json, else a single file."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            weight_map = load_json(index).get("weight_map")
            if not weight_map:
                raise ValueError(f"{index} has no weight_map")
            return [folder / name for name in sorted(set(weight_map.values()))]
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (folder / single).is_file():
            return [folder / single]
    found = sorted(p.name for p in folder.iterdir())
    raise FileNotFoundError(f"no weights in {folder}: expected model.safetensors, pytorch_model.bin or a "
                            f"*.index.json with shards; found {found}")


def read_weights(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint folder (.safetensors, or .bin read with weights_only)."""
    folder = Path(folder)
    state_dict: dict[str, torch.Tensor] = {}
    for path in weight_files(folder):
        if not path.is_file():
            raise FileNotFoundError(f"shard listed in the index is missing: {path}")
        shard = load_safetensors(path) if path.suffix == ".safetensors" else _unwrap(torch_load_checkpoint(path))
        duplicated = set(shard) & set(state_dict)
        if duplicated:
            raise ValueError(f"keys appear in more than one shard: {sorted(duplicated)[:5]}")
        state_dict.update(shard)
    return state_dict


def _unwrap(checkpoint) -> dict:
    for key in WRAPPER_KEYS:
        if isinstance(checkpoint, dict) and key in checkpoint and isinstance(checkpoint[key], dict):
            return checkpoint[key]
    return checkpoint


def config_from_official(folder: str | os.PathLike, tokenizer: DualViTokConfig | None = None) -> IllumePlusConfig:
    """IllumePlusConfig from the LLM fields of their config.json; the vision tokenizer is the
    paper's DualViTok unless given. Base embedding rows = their vocab_size - image tokens."""
    raw = load_json(Path(folder) / "config.json")
    llm = raw.get("text_config") or raw.get("llm_config") or raw
    tokenizer = tokenizer or DualViTokConfig.from_name("illume-plus")
    missing = [f for f in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size") if f not in llm]
    if missing:
        raise ValueError(f"{folder}/config.json lacks the language-model fields {missing}")
    fields = {f: llm[f] for f in LLM_FIELDS if f in llm}
    if "rope_theta" not in fields and isinstance(llm.get("rope_parameters"), dict):
        fields["rope_theta"] = llm["rope_parameters"].get("rope_theta")
    fields.setdefault("num_key_value_heads", fields["num_attention_heads"])
    added = num_added_tokens(tokenizer.semantic_codebook_size, tokenizer.pixel_codebook_size)
    if llm["vocab_size"] <= added:
        raise ValueError(f"vocab_size {llm['vocab_size']} is too small to hold the {added} image tokens")
    return IllumePlusConfig(tokenizer=tokenizer, text_vocab_rows=llm["vocab_size"] - added, **fields)


def load_official(path: str | os.PathLike, config: IllumePlusConfig | None = None,
                  dtype: torch.dtype | None = None):
    """IllumePlus from one of the authors' checkpoint folders (origin or -hf), strictly."""
    from .model import IllumePlus

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a checkpoint folder: {folder}")
    config = config or config_from_official(folder)
    state_dict = convert_official_state_dict(read_weights(folder))
    return IllumePlus.from_state_dict(config, state_dict, dtype=dtype)


def load_official_processor(path: str | os.PathLike, config: IllumePlusConfig):
    """The processor over the extended tokenizer saved in an official folder."""
    from .processor import processor_in_folder

    processor = processor_in_folder(path, config)
    if processor is None:
        raise FileNotFoundError(f"no tokenizer files (tokenizer.json / tokenizer_config.json) in {path}")
    return processor


__all__ = ["load_official", "load_official_processor", "config_from_official", "convert_official_key",
           "convert_official_state_dict", "read_weights", "KEY_RULES"]
