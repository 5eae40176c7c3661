"""The authors' release format: their DualViTok config dict and their `pytorch_model.bin`.

Our parameter names equal theirs, so a checkpoint needs no renaming: this module only reads
their config into ours and unwraps the checkpoint container.
"""

from __future__ import annotations

import os

import torch

from ..utils.io import torch_load_checkpoint

# Containers a checkpoint file may wrap the state dict in (training scripts save several).
CHECKPOINT_CONTAINER_KEYS = ("ema", "model", "state_dict")

# The Qwen2-VL-7B vision tower ('Emova-ollm/qwen2vit600m' in their config), when no ViT config is given.
PAPER_VIT_CONFIG = dict(depth=32, embed_dim=1280, hidden_size=3584, hidden_act="quick_gelu", mlp_ratio=4,
                        num_heads=16, in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)


def _unwrap_config(model_config: dict) -> dict:
    """Accept the DualViTok config itself, or it under `vq_model` / `config`."""
    cfg = model_config
    if "vq_model" in cfg:
        cfg = cfg["vq_model"]
    if "semantic_encoder" not in cfg and "config" in cfg:
        cfg = cfg["config"]
    required = ("semantic_encoder", "semantic_quantizer", "semantic_decoder", "pixel_encoder", "pixel_quantizer",
                "pixel_decoder")
    missing = [k for k in required if k not in cfg]
    if missing:
        raise ValueError(f"not a DualViTok config: missing sections {missing}")
    return cfg


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"unsupported official DualViTok config: {message}")


def config_kwargs_from_official(model_config: dict, vit_config: dict | None = None) -> dict:
    """DualViTokConfig keyword arguments from the authors' config dict and ViT config.json dict."""
    cfg = _unwrap_config(model_config)
    vit = {**PAPER_VIT_CONFIG, **(vit_config or {})}
    sem_enc, sem_dec = cfg["semantic_encoder"], cfg["semantic_decoder"]
    sem_q, pix_q = cfg["semantic_quantizer"], cfg["pixel_quantizer"]
    pix_enc, pix_dec = cfg["pixel_encoder"], cfg["pixel_decoder"]

    dim = sem_q.get("dim", 32)
    _require(pix_q.get("dim", 32) == dim, "semantic and pixel codebooks of different dims")
    kinds = {str(q.get("type", "SimVQ")).lower() for q in (sem_q, pix_q)}
    _require(len(kinds) == 1 and kinds <= {"simvq", "vq"}, f"quantizer types {kinds}")
    _require(not sem_q.get("rotation_trick") and not pix_q.get("rotation_trick"), "rotation_trick")
    _require(sem_enc.get("z_channels", dim) == dim and sem_dec.get("z_channels", dim) == dim,
             "semantic z_channels differ from the codebook dim")
    _require(sem_enc.get("embed_dim") == sem_dec.get("embed_dim"), "semantic encoder and decoder widths differ")
    _require(sem_enc.get("proj_layer", "linear") == "linear", f"semantic proj_layer {sem_enc.get('proj_layer')!r}")
    _require(sem_dec.get("proj_layer", "linear_norm") == "linear_norm",
             f"semantic decoder proj_layer {sem_dec.get('proj_layer')!r}")
    _require(sem_enc.get("target_mlp", "norm") == "norm", f"target_mlp {sem_enc.get('target_mlp')!r}")
    _require(sem_dec.get("output_channels", vit["hidden_size"]) == vit["hidden_size"],
             "semantic decoder output differs from the ViT width")
    for name, section in (("pixel_encoder", pix_enc), ("pixel_decoder", pix_dec)):
        _require(section.get("use_dc_up_down_blocks", False), f"{name} without DC up/down blocks")
        _require(not section.get("double_z", False), f"{name} with double_z")
    _require(pix_enc.get("z_channels") == dim and pix_enc.get("embed_dim", dim) == dim,
             "pixel encoder z_channels/embed_dim differ from the codebook dim")
    _require(pix_dec.get("z_channels") == 2 * dim, "pixel decoder z_channels != 2 x codebook dim")
    _require(list(pix_enc.get("attn_resolutions", [])) == list(pix_dec.get("attn_resolutions", [])),
             "encoder and decoder attention levels differ")
    _require(pix_q.get("codebook_size") == pix_enc.get("codebook_size", pix_q.get("codebook_size")),
             "pixel codebook sizes differ between quantizer and encoder sections")

    token_rate = cfg.get("pixel_drop_rate")  # None in their config: no noise injection
    return dict(
        vit_depth=vit["depth"], vit_embed_dim=vit["embed_dim"], vit_num_heads=vit["num_heads"],
        vit_mlp_ratio=vit["mlp_ratio"], vit_hidden_act=vit["hidden_act"], vit_hidden_size=vit["hidden_size"],
        vit_in_channels=vit["in_channels"], vit_patch_size=vit["patch_size"],
        vit_temporal_patch_size=vit["temporal_patch_size"], vit_spatial_merge_size=vit["spatial_merge_size"],
        semantic_width=sem_enc["embed_dim"], semantic_encoder_blocks=sem_enc["num_blocks"],
        semantic_decoder_blocks=sem_dec["num_blocks"],
        quantizer=kinds.pop(), codebook_dim=dim,
        semantic_codebook_size=sem_q["codebook_size"], pixel_codebook_size=pix_q["codebook_size"],
        pixel_encoder_ch=pix_enc["ch"], pixel_encoder_ch_mult=tuple(pix_enc["ch_mult"]),
        pixel_encoder_num_res_blocks=pix_enc["num_res_blocks"],
        # their `attn_resolutions` name the levels that get attention
        pixel_attn_levels=tuple(pix_enc.get("attn_resolutions", [])),
        pixel_dropout=pix_enc.get("dropout", 0.0),
        pixel_decoder_ch=pix_dec["ch"], pixel_decoder_ch_mult=tuple(pix_dec["ch_mult"]),
        pixel_decoder_num_res_blocks=pix_dec["num_res_blocks"], out_channels=pix_dec.get("out_channels", 3),
        noise_batch_rate=cfg.get("pixel_drop_batch_rate") or 0.0,
        noise_token_rate=token_rate or 0.0,
        noise_type=cfg.get("pixel_noise_type", "random"),
    )


def load_official_state_dict(checkpoint: str | os.PathLike | dict) -> dict[str, torch.Tensor]:
    """The state dict of an official checkpoint: a path to `pytorch_model.bin` or a loaded dict,
    holding the weights directly or under one of CHECKPOINT_CONTAINER_KEYS."""
    state = torch_load_checkpoint(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else checkpoint
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint must hold a dict of tensors, got {type(state).__name__}")
    for key in CHECKPOINT_CONTAINER_KEYS:
        if key in state and isinstance(state[key], dict):
            state = state[key]
            break
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"checkpoint entries that are not tensors: {bad[:10]}")
    # Some training wrappers prefix every key with "module." (DDP): drop it.
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)
