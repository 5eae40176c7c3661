"""The tokenizer stage configs follow the release (noise on at fixed resolution, off at any
resolution) and stage 1 never silently distils a random ViT."""

from pathlib import Path

import pytest
import torch

from illume_plus.tokenizer import DualViTok, DualViTokConfig
from illume_plus.training.config import load_config
from illume_plus.training.tokenizer import TokenizerTrainingConfig, check_semantic_teacher, train

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "tokenizer"


def stage(name: str, *overrides: str) -> TokenizerTrainingConfig:
    return load_config(TokenizerTrainingConfig, CONFIGS / f"{name}.yaml", list(overrides))


def tokenizer_config(config: TokenizerTrainingConfig) -> DualViTokConfig:
    section = config.model
    return DualViTokConfig.from_name(section.preset, quantizer=section.quantizer, **section.overrides)


@pytest.mark.parametrize("name,noise_on", [("stage1_256", True), ("stage2_512", True), ("stage3_anyres", False)])
def test_noise_injection_on_at_fixed_resolution_off_at_any_resolution(name, noise_on):
    cfg = tokenizer_config(stage(name))
    # the release's fixed-256 config: pixel_drop_rate 0.1, pixel_drop_batch_rate 0.1, "random";
    # its any-resolution config: pixel_drop_rate None (no noise)
    assert (cfg.noise_token_rate > 0 and cfg.noise_batch_rate > 0) == noise_on
    if noise_on:
        assert (cfg.noise_batch_rate, cfg.noise_token_rate, cfg.noise_type) == (0.1, 0.1, "random")


def test_stage1_without_vit_weights_is_refused_before_any_work(tmp_path):
    config = stage("stage1_256", f"train.output_dir={tmp_path / 'run'}")
    with pytest.raises(ValueError, match="model.vit_weights is not set"):
        train(config)
    assert not (tmp_path / "run").exists()
    check_semantic_teacher(stage("stage1_256", "model.vit_weights=some/folder"))
    check_semantic_teacher(stage("stage1_256", "model.random_vit_teacher=true"))
    check_semantic_teacher(stage("stage2_512"))  # starts from stage 1's weights (train.init_from)


def test_vit_weights_come_from_the_authors_checkpoint_only(tmp_path):
    """`model.vit_weights` pointing at a DualViTok .bin (wrapped as their trainer saves it) loads the
    ViT and nothing else."""
    torch.manual_seed(0)
    source = DualViTok(DualViTokConfig.from_name("tiny"))
    torch.save({"model": source.state_dict(), "steps": 1}, tmp_path / "pytorch_model.bin")
    torch.manual_seed(1)
    target = DualViTok(DualViTokConfig.from_name("tiny"))
    head_before = target.semantic_encoder.proj_in.weight.clone()
    target.load_vit_weights(tmp_path / "pytorch_model.bin")
    for name, tensor in source.semantic_encoder.vit.state_dict().items():
        assert torch.equal(target.semantic_encoder.vit.state_dict()[name], tensor), name
    assert torch.equal(target.semantic_encoder.proj_in.weight, head_before)
    with pytest.raises(FileNotFoundError, match="ViT weights not found"):
        target.load_vit_weights(tmp_path / "missing.bin")
