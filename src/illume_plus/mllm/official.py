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

The folder's config.json says which vision tokenizer the model was trained with: its
`mm_vision_tower.vq_config` names the authors' DualViTok config file (read when it can be found
locally), `mm_hidden_size` the adaptors' input widths, `vocab_size` the rows of the extended
vocabulary; the folder's tokenizer files hold the image-code tokens. They are checked against the
vision tokenizer config used, and a disagreement names the numbers.

Data flows one way: this module builds `IllumePlus` (model.py), which knows nothing of it.
`load_official(folder)` is the entry point (also `illume_plus.load_official`).
"""

from __future__ import annotations

import ast
import json
import os
import re
import warnings
from pathlib import Path

import torch

from ..tokenizer.config import DualViTokConfig
from ..utils.io import load_json
from .config import IllumePlusConfig
from .generation_config import GenerationDefaults
from .model import IllumePlus
from .processor import processor_in_folder
from .vocab import num_added_tokens
from .weights import read_weights, weight_files

# (pattern on their key, replacement giving ours); first match wins.
KEY_RULES = (
    (re.compile(r"^model\.vision_tower\.semantic_encoder\."), "vision_tower.semantic_encoder."),
    (re.compile(r"^model\.vision_tower\.pixel_encoder\."), "vision_tower.pixel_encoder."),
    (re.compile(r"^model\.mm_projector\.projector_1\."), "semantic_adaptor."),
    (re.compile(r"^model\.mm_projector\.projector_2\."), "pixel_adaptor."),
    (re.compile(r"^model\.(embed_tokens|layers|norm)\."), r"language_model.model.\1."),
    (re.compile(r"^lm_head\."), "language_model.lm_head."),
)
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


def config_from_official(folder: str | os.PathLike, tokenizer: DualViTokConfig | None = None) -> IllumePlusConfig:
    """IllumePlusConfig from their config.json: the LLM fields, and the vision tokenizer given, else
    the DualViTok config its `mm_vision_tower.vq_config` points to (when found locally), else the
    paper's. Base embedding rows = their vocab_size - image tokens. The folder's adaptor widths
    (`mm_hidden_size`) and image-code tokens must agree with that vision tokenizer."""
    folder = Path(folder)
    raw = load_json(folder / "config.json")
    llm = raw.get("text_config") or raw.get("llm_config") or raw
    tokenizer = tokenizer or _tokenizer_config_of(folder, raw) or DualViTokConfig.from_name("illume-plus")
    missing = [f for f in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size") if f not in llm]
    if missing:
        raise ValueError(f"{folder}/config.json lacks the language-model fields {missing}")
    fields = {f: llm[f] for f in LLM_FIELDS if f in llm}
    if "rope_theta" not in fields and isinstance(llm.get("rope_parameters"), dict):
        fields["rope_theta"] = llm["rope_parameters"].get("rope_theta")
    fields.setdefault("num_key_value_heads", fields["num_attention_heads"])
    if "tie_word_embeddings" not in fields and "tie_word_embeddings" in raw:
        fields["tie_word_embeddings"] = raw["tie_word_embeddings"]
    _check_adaptors(folder, raw, tokenizer)
    _check_code_vocabulary(folder, llm["vocab_size"], tokenizer)
    added = num_added_tokens(tokenizer.semantic_codebook_size, tokenizer.pixel_codebook_size)
    if llm["vocab_size"] <= added:
        raise ValueError(f"{folder}/config.json: vocab_size {llm['vocab_size']} is too small to hold the {added} "
                         f"image tokens of codebooks of {tokenizer.semantic_codebook_size} semantic and "
                         f"{tokenizer.pixel_codebook_size} pixel codes")
    return IllumePlusConfig(tokenizer=tokenizer, text_vocab_rows=llm["vocab_size"] - added, **fields)


def _tokenizer_config_of(folder: Path, raw: dict) -> DualViTokConfig | None:
    """The DualViTok config named by `mm_vision_tower.vq_config` (their .py config, or .json),
    looked up as given, then inside the folder; None (with a warning) when it is not found."""
    tower = raw.get("mm_vision_tower")
    if not isinstance(tower, dict) or not tower.get("vq_config"):
        return None
    named = Path(tower["vq_config"])
    for candidate in (named, folder / named, folder / named.name):
        if candidate.is_file():
            dualvitok = read_official_config_file(candidate)
            return DualViTokConfig.from_official(dualvitok, vit_config=_vit_config_of(folder, dualvitok))
    warnings.warn(f"{folder}/config.json names the vision tokenizer config {named}, which is not here (looked "
                  f"in {folder}): assuming the paper's DualViTok; put the file in the folder to use it",
                  stacklevel=3)
    return None


def _vit_config_of(folder: Path, dualvitok: dict) -> dict | None:
    """The config.json of the ViT their semantic encoder loads (`semantic_encoder.semantic_encoder`),
    when that is a local folder (as given or inside `folder`); None means the paper's ViT."""
    cfg = dualvitok.get("vq_model", dualvitok)
    cfg = cfg.get("config", cfg)
    name = (cfg.get("semantic_encoder") or {}).get("semantic_encoder")
    if not name:
        return None
    named = Path(name)
    for candidate in (named, folder / named, folder / named.name):
        if (candidate / "config.json").is_file():
            return load_json(candidate / "config.json")
    return None


def read_official_config_file(path: str | os.PathLike) -> dict:
    """The authors' DualViTok config file as a dict: JSON, or their Python config (`vq_model =
    dict(...)`), whose literals are evaluated without running the file."""
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".json":
        return json.loads(text)
    for node in ast.parse(text, filename=str(path)).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "vq_model" for t in node.targets):
            return {"vq_model": _literal(node.value, path)}
    raise ValueError(f"{path} defines no `vq_model = dict(...)`")


_OPERATORS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
              ast.FloorDiv: lambda a, b: a // b, ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a ** b}


def _literal(node: ast.AST, path: Path):
    """Constants, lists, tuples, dicts, dict(...) calls and arithmetic; nothing else is run."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(v, path) for v in node.elts]
    if isinstance(node, ast.Dict):
        return {_literal(k, path): _literal(v, path) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dict" and not node.args:
        return {kw.arg: _literal(kw.value, path) for kw in node.keywords}
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_literal(node.left, path), _literal(node.right, path))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_literal(node.operand, path)
    raise ValueError(f"{path}:{node.lineno}: only literal values are read from a config file, "
                     f"got {ast.dump(node)[:80]}")


def _check_adaptors(folder: Path, raw: dict, tokenizer: DualViTokConfig) -> None:
    """`mm_hidden_size` (their adaptor input widths) must be the vision tokenizer's feature widths."""
    widths = raw.get("mm_hidden_size")
    if widths is None:
        return
    ours = [tokenizer.vit_hidden_size, tokenizer.pixel_encoder.z_channels]
    if list(widths) != ours:
        raise ValueError(f"{folder}/config.json: mm_hidden_size {list(widths)} (semantic, pixel adaptor inputs) "
                         f"disagrees with the vision tokenizer's feature widths {ours} (ViT hidden_size, pixel "
                         "encoder z_channels)")
    projector = raw.get("mm_projector") or {}
    for name in ("projector_cfg1", "projector_cfg2"):
        part = projector.get(name) or {}
        if part.get("mlp_depth", 2) != 2 or part.get("pre_norm", False) or part.get("type", "MLPProjector") != \
                "MLPProjector":
            raise ValueError(f"{folder}/config.json: mm_projector.{name} {part} is not the two-layer MLP "
                             "(Linear-GELU-Linear) that IllumePlus's adaptors are")


_CODE_TOKEN = re.compile(r"^<\|image_level([01])_(\d+)\|>$")


def _check_code_vocabulary(folder: Path, vocab_size: int, tokenizer: DualViTokConfig) -> None:
    """The folder's tokenizer files hold one token per code of each codebook, below vocab_size."""
    added = _added_tokens(folder)
    if not added:
        return
    ids: dict[str, list[tuple[int, int]]] = {"0": [], "1": []}
    for content, token_id in added.items():
        match = _CODE_TOKEN.match(content)
        if match:
            ids[match.group(1)].append((int(match.group(2)), token_id))
    for level, what, size in (("0", "semantic", tokenizer.semantic_codebook_size),
                              ("1", "pixel", tokenizer.pixel_codebook_size)):
        codes = ids[level]
        if len(codes) != size or (codes and max(k for k, _ in codes) != size - 1):
            raise ValueError(f"{folder}: the vocabulary holds {len(codes)} {what} code tokens "
                             f"(<|image_level{level}_k|>) but the vision tokenizer's {what} codebook has {size} "
                             "codes; give the DualViTok config the checkpoint was trained with")
    top = max((i for codes in ids.values() for _, i in codes), default=-1)
    if top >= vocab_size:
        raise ValueError(f"{folder}: image-code token ids reach {top} but config.json's vocab_size is {vocab_size}")


def _added_tokens(folder: Path) -> dict[str, int]:
    """content -> id of the tokens added to the text tokenizer (added_tokens.json or tokenizer.json)."""
    if (folder / "added_tokens.json").is_file():
        return {str(k): int(v) for k, v in load_json(folder / "added_tokens.json").items()}
    if (folder / "tokenizer.json").is_file():
        return {t["content"]: int(t["id"]) for t in load_json(folder / "tokenizer.json").get("added_tokens", [])}
    return {}


def load_official(path: str | os.PathLike, config: IllumePlusConfig | None = None,
                  dtype: torch.dtype | None = None, tokenizer: DualViTokConfig | None = None) -> IllumePlus:
    """IllumePlus from one of the authors' checkpoint folders (origin or -hf), strictly, with the
    processor over the folder's extended tokenizer attached (None when the folder has none).
    `config` overrides what the folder says; `tokenizer` only the vision tokenizer's config."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a checkpoint folder: {folder}")
    config = config or config_from_official(folder, tokenizer=tokenizer)
    state_dict = convert_official_state_dict(read_weights(folder))
    model = IllumePlus.from_state_dict(config, state_dict, dtype=dtype)
    model.processor = processor_in_folder(folder, model.config)
    model.generation_defaults = GenerationDefaults.from_folder(folder)  # the release's: penalty 1.05
    return model


def load_official_processor(path: str | os.PathLike, config: IllumePlusConfig):
    """The processor over the extended tokenizer saved in an official folder."""
    processor = processor_in_folder(path, config)
    if processor is None:
        raise FileNotFoundError(f"no tokenizer files (tokenizer.json / tokenizer_config.json) in {path}")
    return processor


__all__ = ["load_official", "load_official_processor", "config_from_official", "read_official_config_file",
           "convert_official_key", "convert_official_state_dict", "read_weights", "weight_files", "KEY_RULES"]
