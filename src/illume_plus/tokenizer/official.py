"""The authors' release format: their DualViTok config dict and their `pytorch_model.bin`.

Our parameter names equal theirs, so a checkpoint needs no renaming: this module reads their
config into ours and unwraps the checkpoint container.

Their config has one section per part; the defaults below are the ones their code applies when a
key is absent (`SemanticEncoder`, `SemanticDecoder`, `get_movqgan_config`, `SimVQ`). Every
configuration their DualViTok builds and runs is mapped; the few it refuses or cannot run are
refused here with the reason (`UnsupportedOfficialConfig`), listed in docs/tokenizer.md.
"""

from __future__ import annotations

import os

import torch

from ..utils.io import torch_load_checkpoint

# The Qwen2-VL-7B vision tower ('Emova-ollm/qwen2vit600m' in their config), when no ViT config is given.
PAPER_VIT_CONFIG = dict(depth=32, embed_dim=1280, hidden_size=3584, hidden_act="quick_gelu", mlp_ratio=4,
                        num_heads=16, in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)

# Defaults of their code for keys a section leaves out.
SEMANTIC_ENCODER_DEFAULTS = dict(z_channels=4, double_z=False, num_blocks=2, embed_dim=1280, proj_layer="linear",
                                 target_mlp="norm", attn_implementation="xformers", semantic_encoder=None)
SEMANTIC_DECODER_DEFAULTS = dict(z_channels=4, embed_dim=1280, num_blocks=2, output_channels=1280,
                                 proj_layer="linear", attn_implementation="xformers")
MOVQ_DEFAULTS = dict(attn_resolutions=[4], ch=256, ch_mult=[1, 1, 2, 2, 4], codebook_size=32768, double_z=False,
                     dropout=0.0, embed_dim=4, in_channels=3, model_type="MoVQ", num_res_blocks=2, out_channels=3,
                     z_channels=32, use_dc_up_down_blocks=False)
SIMVQ_DEFAULTS = dict(channel_first=False, rotation_trick=True, input_to_quantize_commit_loss_weight=0.25,
                      commitment_weight=1.0, frozen_codebook_dim=None)
MODEL_TYPES = ("DualViTok",)  # their SingleVQ / SemanticVQ are other models
QUANTIZER_TYPES = {"SimVQ": "simvq"}


class UnsupportedOfficialConfig(ValueError):
    """An authors' DualViTok config that this package does not build (the message says why)."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UnsupportedOfficialConfig(f"unsupported official DualViTok config: {message}")


def _unwrap_config(model_config: dict) -> dict:
    """Accept the DualViTok config itself, or it under `vq_model` / `config` (their .py layout)."""
    cfg = model_config
    if "vq_model" in cfg:
        cfg = cfg["vq_model"]
    if "semantic_encoder" not in cfg and "config" in cfg:
        _require(cfg.get("type", "DualViTok") in MODEL_TYPES,
                 f"model type {cfg.get('type')!r}; only {MODEL_TYPES} is a dual tokenizer")
        cfg = cfg["config"]
    required = ("semantic_encoder", "semantic_quantizer", "semantic_decoder", "pixel_encoder", "pixel_quantizer",
                "pixel_decoder")
    missing = [k for k in required if k not in cfg]
    if missing:
        raise ValueError(f"not a DualViTok config: missing sections {missing}")
    return cfg


def _section(cfg: dict, name: str, defaults: dict, strict_keys: bool) -> dict:
    section = cfg[name]
    if strict_keys:  # their class takes exactly these keyword arguments
        unknown = sorted(set(section) - set(defaults))
        _require(not unknown, f"{name} has keys {unknown} that their {name} constructor does not take")
    return {**defaults, **section}


def _quantizer(cfg: dict, name: str) -> tuple[str, dict]:
    section = dict(cfg[name])
    kind = section.pop("type", None)
    _require(kind in QUANTIZER_TYPES, f"{name} type {kind!r}: only {sorted(QUANTIZER_TYPES)} is supported "
             "(the residual, lookup-free and scalar quantizers give several indices per position or none to "
             "look up, and VectorQuantize's EMA k-means codebook is another training algorithm)")
    q = {**SIMVQ_DEFAULTS, **section}
    unknown = sorted(set(q) - set(SIMVQ_DEFAULTS) - {"dim", "codebook_size"})
    _require(not unknown, f"{name} has keys {unknown} that cannot come from a config file "
             "(custom codebook transforms / init functions)")
    _require(q["channel_first"], f"{name}.channel_first must be true: DualViTok feeds (B, C, H, W) maps")
    return QUANTIZER_TYPES[kind], dict(
        codebook_size=q["codebook_size"], dim=q["dim"], frozen_dim=q["frozen_codebook_dim"],
        commitment_weight=q["input_to_quantize_commit_loss_weight"], loss_weight=q["commitment_weight"],
        rotation_trick=bool(q["rotation_trick"]))


def _pixel_part(section: dict) -> dict:
    return dict(ch=section["ch"], ch_mult=tuple(section["ch_mult"]), num_res_blocks=section["num_res_blocks"],
                attn_levels=tuple(section["attn_resolutions"]),  # their `attn_resolutions` name levels
                dropout=section["dropout"], dc_blocks=bool(section["use_dc_up_down_blocks"]),
                z_channels=section["z_channels"])


def config_kwargs_from_official(model_config: dict, vit_config: dict | None = None) -> dict:
    """DualViTokConfig keyword arguments (sub-configs as dicts) from the authors' config dict and
    their ViT config.json dict (bare, or a whole Qwen2-VL config with `vision_config`)."""
    cfg = _unwrap_config(model_config)
    vit_config = (vit_config or {}).get("vision_config", vit_config) or {}
    vit = {**PAPER_VIT_CONFIG, **{k: v for k, v in vit_config.items() if k in PAPER_VIT_CONFIG}}
    sem_enc = _section(cfg, "semantic_encoder", SEMANTIC_ENCODER_DEFAULTS, strict_keys=True)
    sem_dec = _section(cfg, "semantic_decoder", SEMANTIC_DECODER_DEFAULTS, strict_keys=True)
    pix_enc = _section(cfg, "pixel_encoder", MOVQ_DEFAULTS, strict_keys=False)  # MoVQConfig keeps extra keys
    pix_dec = _section(cfg, "pixel_decoder", MOVQ_DEFAULTS, strict_keys=False)
    sem_kind, sem_q = _quantizer(cfg, "semantic_quantizer")
    pix_kind, pix_q = _quantizer(cfg, "pixel_quantizer")

    # Combinations their code builds but cannot run (it fails in the forward pass):
    head_out = sem_enc["z_channels"] * (2 if sem_enc["double_z"] else 1)
    _require(head_out == sem_q["dim"], f"the semantic encoder emits {head_out} channels but the semantic "
             f"quantizer's dim is {sem_q['dim']}")
    _require(sem_dec["z_channels"] == sem_q["dim"], f"semantic_decoder.z_channels {sem_dec['z_channels']} != "
             f"semantic quantizer dim {sem_q['dim']}")
    _require(sem_enc["embed_dim"] != vit["hidden_size"], f"semantic_encoder.embed_dim equal to the ViT width "
             f"{vit['hidden_size']}: their proj_in becomes nn.Identity and its forward reads proj_in.weight")
    _require(sem_enc["target_mlp"] in ("norm", "identity"), f"target_mlp {sem_enc['target_mlp']!r}")
    _require(not pix_enc["double_z"], "pixel_encoder.double_z: the encoder then emits 2 x z_channels, which "
             "their pixel_quant_conv (z_channels inputs) cannot take")
    _require(pix_enc["embed_dim"] == pix_q["dim"], f"pixel_encoder.embed_dim {pix_enc['embed_dim']} != pixel "
             f"quantizer dim {pix_q['dim']}")
    fused = sem_q["dim"] + pix_q["dim"]
    _require(pix_dec["embed_dim"] == fused, f"pixel_decoder.embed_dim {pix_dec['embed_dim']} != the fused code "
             f"width {fused} (semantic {sem_q['dim']} + pixel {pix_q['dim']})")
    _require(pix_enc["in_channels"] == vit["in_channels"], f"pixel_encoder.in_channels {pix_enc['in_channels']}: "
             f"the same image feeds the ViT ({vit['in_channels']} channels)")
    _require(sem_kind == pix_kind, "the two quantizers of different types")
    _require(cfg.get("semantic_detail_merge_type", "cat") == "cat",
             "semantic_detail_merge_type other than 'cat' (decoding from the pixel codes alone)")

    # Noise injection runs in training when pixel_drop_rate is set (their `merge_quants`); a noise
    # type other than "random" / "zero" makes their `apply_noise` a no-op.
    token_rate = cfg.get("pixel_drop_rate") or 0.0
    noise_type = cfg.get("pixel_noise_type", "random")
    if noise_type not in ("random", "zero"):
        token_rate, noise_type = 0.0, "random"
    _require(not token_rate or cfg.get("pixel_drop_batch_rate") is not None,
             "pixel_drop_rate without pixel_drop_batch_rate (their apply_noise needs both)")

    return dict(
        vit_depth=vit["depth"], vit_embed_dim=vit["embed_dim"], vit_num_heads=vit["num_heads"],
        vit_mlp_ratio=vit["mlp_ratio"], vit_hidden_act=vit["hidden_act"], vit_hidden_size=vit["hidden_size"],
        vit_in_channels=vit["in_channels"], vit_patch_size=vit["patch_size"],
        vit_temporal_patch_size=vit["temporal_patch_size"], vit_spatial_merge_size=vit["spatial_merge_size"],
        # their blocks: Qwen2VLVisionConfig(depth, embed_dim) defaults, i.e. 16 heads, MLP ratio 4, quick_gelu
        semantic_head=dict(width=sem_enc["embed_dim"], num_blocks=sem_enc["num_blocks"],
                           proj_layer=sem_enc["proj_layer"], target=sem_enc["target_mlp"]),
        semantic_decoder=dict(width=sem_dec["embed_dim"], num_blocks=sem_dec["num_blocks"],
                              proj_layer=sem_dec["proj_layer"], out_channels=sem_dec["output_channels"]),
        quantizer=sem_kind, semantic_quantizer=sem_q, pixel_quantizer=pix_q,
        pixel_encoder=_pixel_part(pix_enc),
        pixel_decoder=dict(_pixel_part(pix_dec), out_channels=pix_dec["out_channels"]),
        noise_batch_rate=cfg.get("pixel_drop_batch_rate") or 0.0,
        noise_token_rate=token_rate,
        noise_type=noise_type,
    )


def load_official_state_dict(checkpoint: str | os.PathLike | dict, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """The state dict of an official checkpoint: a path to `pytorch_model.bin` or a loaded dict,
    holding the weights directly or wrapped. A wrapper holding "model" and "ema" gives "model"
    unless `use_ema` (their loader's default); then "state_dict"; `use_ema` needs an "ema" entry."""
    state = torch_load_checkpoint(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else checkpoint
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint must hold a dict of tensors, got {type(state).__name__}")
    wrapped = {k for k in ("ema", "model", "state_dict") if isinstance(state.get(k), dict)}
    if use_ema:
        if "ema" not in wrapped:
            raise ValueError(f"use_ema=True but the checkpoint has no 'ema' entry (it holds {sorted(state)[:10]})")
        state = state["ema"]
    elif "model" in wrapped or "state_dict" in wrapped:
        state = state["model" if "model" in wrapped else "state_dict"]
    elif "ema" in wrapped:
        raise ValueError("the checkpoint holds only EMA weights ('ema'); load them with use_ema=True")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"checkpoint entries that are not tensors: {bad[:10]}")
    # Some training wrappers prefix every key with "module." (DDP): drop it.
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)
