from pathlib import Path

import pytest
import torch
import yaml

from illume_plus.mllm.config import IllumePlusConfig
from illume_plus.training.mllm_stages import (ParamGroupConfig, RowMasks, StageSection, assign_groups,
                                              build_stage_optimizer, image_vocab_rows)

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "mllm"


@pytest.fixture(scope="module")
def tiny_config():
    return IllumePlusConfig.from_name("tiny")


@pytest.fixture(scope="module")
def tiny_layout(tiny_config):
    from illume_plus.mllm.processor import IllumePlusProcessor
    from illume_plus.mllm.text_tokenizer import build_tiny_text_tokenizer

    return IllumePlusProcessor.from_text_tokenizer(build_tiny_text_tokenizer(), tiny_config).layout


def _stage(name: str) -> StageSection:
    return StageSection(**yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["stage"])


def _meta_model(preset: str):
    from illume_plus.mllm.model import IllumePlus

    with torch.device("meta"):
        return IllumePlus(IllumePlusConfig.from_name(preset))


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_paper_stages_select_the_right_parameters_of_the_3b_model():
    model = _meta_model("illume-plus-3b")
    groups = assign_groups(model, _stage("stage1").parameter_groups())
    assert _trainable(model) == {n for n, _ in model.named_parameters()
                                 if n.startswith(("semantic_adaptor.", "pixel_adaptor.", "language_model.model.embed_tokens"))}
    assert groups["language_model.model.embed_tokens.weight"].rows == "image"

    assign_groups(model, _stage("stage2_256").parameter_groups())
    assert not any(n.startswith("vision_tower.") for n in _trainable(model))
    assert "language_model.model.layers.35.mlp.down_proj.weight" in _trainable(model)

    groups = assign_groups(model, _stage("stage3").parameter_groups())
    vision = {n for n in _trainable(model) if n.startswith("vision_tower.")}
    vit_blocks = {int(n.split(".")[3]) for n in vision if ".semantic_encoder.blocks." in n}
    assert vit_blocks == set(range(16, 32))
    assert any(".semantic_encoder.merger." in n for n in vision)
    assert not any(".patch_embed." in n for n in vision)
    pixel = {n.split(".")[2] for n in vision if ".pixel_encoder." in n}
    assert pixel == {"mid", "norm_out", "conv_out"}  # not conv_in, not the down path
    assert {groups[n].lr for n in vision} == {2e-6}
    assert groups["language_model.model.norm.weight"].lr == 2e-5


def test_optimizer_groups_carry_the_configured_learning_rates(tiny_config):
    from illume_plus.mllm.model import IllumePlus

    model = IllumePlus(tiny_config)
    stage = _stage("tiny_stage3")
    chosen = assign_groups(model, stage.parameter_groups())
    optimizer = build_stage_optimizer(model, chosen, stage)
    expected = {g["name"]: g["lr"] for g in stage.groups}
    assert {g["name"]: g["lr"] for g in optimizer.param_groups} == expected
    assert all(g["weight_decay"] == 0.0 for g in optimizer.param_groups)
    params = dict(model.named_parameters())
    for group in optimizer.param_groups:
        members = {id(p) for p in group["params"]}
        names = {n for n, g in chosen.items() if g.name == group["name"]}
        assert members == {id(params[n]) for n in names}
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(_trainable(model))


def test_a_group_matching_nothing_is_an_error(tiny_config):
    from illume_plus.mllm.model import IllumePlus

    with pytest.raises(ValueError, match=r"\['typo'\] match no parameter"):
        assign_groups(IllumePlus(tiny_config), [ParamGroupConfig("typo", ["language_modle\\."], 1e-4)])
    with pytest.raises(ValueError, match="rows must be"):
        ParamGroupConfig("x", ["a"], 1e-4, rows="text")


def test_row_mask_zeroes_the_text_rows_of_a_tied_embedding(tiny_config, tiny_layout):
    from illume_plus.mllm.model import IllumePlus

    model = IllumePlus(tiny_config)
    chosen = assign_groups(model, _stage("tiny_stage1").parameter_groups())
    masks = RowMasks(model, chosen, tiny_layout)
    masks.place(model)
    embedding = model.language_model.model.embed_tokens.weight
    assert embedding is model.language_model.lm_head.weight  # tied: one tensor, one mask
    embedding.grad = torch.ones_like(embedding)
    masks.apply()
    image = image_vocab_rows(tiny_layout, embedding.shape[0])
    assert image.sum() == 7 + 32 + 256 + 512  # structural, tags, both codebooks
    assert (embedding.grad[~image] == 0).all() and (embedding.grad[image] == 1).all()
    assert image[tiny_layout.start_of_image] and not image[tiny_layout.im_end]
