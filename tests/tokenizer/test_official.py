"""Compatibility with the authors' DualViTok: their config, their key names, their numbers.

The fixture (tests/data/dualvitok_public.*) was produced by the authors' code with random
weights; every expected value below comes from it, not from our code.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from illume_plus.tokenizer import DualViTok, DualViTokConfig
from illume_plus.tokenizer.official import load_official_state_dict
from illume_plus.tokenizer.preprocess import semantic_patches

DATA = Path(__file__).resolve().parents[1] / "data"
INPUTS = ("img224", "img224x336", "img256")
TOL = 1e-5


@pytest.fixture(scope="module")
def fixture():
    meta = json.loads((DATA / "dualvitok_public.json").read_text())
    tensors = load_file(str(DATA / "dualvitok_public.safetensors"))
    weights = {k[len("weights."):]: v for k, v in tensors.items() if k.startswith("weights.")}
    return meta, tensors, weights


@pytest.fixture(scope="module")
def config(fixture):
    meta, _, _ = fixture
    return DualViTokConfig.from_official(meta["dualvitok_config"], vit_config=meta["vit_config"])


@pytest.fixture(scope="module")
def official(fixture, config):
    return DualViTok.from_official(fixture[2], config)


def test_config_from_official_dict(fixture, config):
    meta = fixture[0]
    cfg, vit = meta["dualvitok_config"], meta["vit_config"]
    assert (config.vit_depth, config.vit_embed_dim, config.vit_num_heads, config.vit_hidden_size) == (
        vit["depth"], vit["embed_dim"], vit["num_heads"], vit["hidden_size"])
    assert config.semantic_head.width == cfg["semantic_encoder"]["embed_dim"]
    assert config.semantic_head.num_blocks == cfg["semantic_encoder"]["num_blocks"]
    assert config.semantic_decoder.num_blocks == cfg["semantic_decoder"]["num_blocks"]
    assert config.semantic_decoder_out_channels == cfg["semantic_decoder"]["output_channels"]
    assert config.semantic_head.num_heads == meta["attention_classes"]["semantic_block_num_heads"] == 16
    assert config.semantic_codebook_size == cfg["semantic_quantizer"]["codebook_size"]
    assert config.pixel_codebook_size == cfg["pixel_quantizer"]["codebook_size"]
    assert config.pixel_decoder.num_res_blocks == cfg["pixel_decoder"]["num_res_blocks"]
    assert config.pixel_decoder.z_channels == cfg["pixel_decoder"]["z_channels"]
    assert config.quantizer == "simvq"
    assert config.noise_token_rate == 0.0  # their pixel_drop_rate is null: no noise
    assert sum(p.numel() for p in DualViTok(config).parameters()) == meta["num_params"]


def test_every_official_key_is_consumed(fixture, official):
    weights = fixture[2]
    ours = official.state_dict()
    assert set(ours) == set(weights)
    for name, tensor in weights.items():
        assert torch.equal(ours[name], tensor), name
    assert not any(t.is_meta for t in [*official.parameters(), *official.buffers()])
    frozen = {n for n, p in official.named_parameters() if not p.requires_grad}
    assert frozen == {n for n in weights if n.startswith("semantic_encoder.model.")}  # only the ViT


@pytest.mark.parametrize("name", INPUTS)
def test_matches_authors_outputs(fixture, official, name):
    _, tensors, _ = fixture
    image = tensors[f"inputs.{name}"]
    ref = {k.split(".")[-1]: v for k, v in tensors.items() if k.startswith(f"outputs.{name}.")}
    with torch.no_grad():
        enc = official.encode(image)
        semantic_ids, pixel_ids = ref["semantic_indices"], ref["pixel_indices"]
        fused = official.fused_codes(semantic_ids, pixel_ids)
        ours = {
            "vit_merger_output": enc.semantic_features.flatten(0, 1),
            "semantic_target": enc.semantic_target,
            "semantic_prequant": official.semantic_encoder.head(enc.semantic_target),
            "semantic_decoder_output": official.decode_semantic(enc.semantic_codes),
            "pixel_encoder_output": enc.pixel_features,
            "pixel_prequant": official.pixel_quant_conv(enc.pixel_features),
            "fused_codes_from_indices": fused,
            "post_quant_conv_out": official.pixel_post_quant_conv(fused),
            "reconstruction_from_indices": official.decode(semantic_ids, pixel_ids),
            "semantic_commit_loss": enc.semantic_commit_loss.reshape(1),
            "pixel_commit_loss": enc.pixel_commit_loss.reshape(1),
        }
    assert torch.equal(enc.semantic_ids, semantic_ids)
    assert torch.equal(enc.pixel_ids, pixel_ids)
    h, w = image.shape[-2:]
    assert official.semantic_grid_size(h, w) == tuple(ref["semantic_grid_thw"][0, 1:].div(2).tolist())
    for stage, value in ours.items():
        assert value.shape == ref[stage].shape, stage
        diff = (value.float() - ref[stage]).abs().max().item()
        assert diff < TOL, f"{name} {stage}: max abs diff {diff:.2e}"


def test_vit_input_patches(fixture, official, config):
    _, tensors, _ = fixture
    image = tensors["inputs.img224"]
    patches, grid_thw = semantic_patches(image, official.semantic_input_size(224, 224), config.semantic_image_mean,
                                         config.semantic_image_std)
    assert torch.equal(grid_thw, tensors["outputs.img224.semantic_grid_thw"])
    assert (patches - tensors["outputs.img224.semantic_vit_input_patches"]).abs().max() < TOL


@pytest.mark.parametrize("container", [None, "model", "state_dict"])
def test_checkpoint_file_formats(tmp_path, fixture, config, container):
    weights = fixture[2]
    path = tmp_path / "pytorch_model.bin"
    torch.save(weights if container is None else {container: weights, "step": torch.tensor(3)}, path)
    loaded = DualViTok.from_official(path, config)
    assert torch.equal(loaded.pixel_decoder.conv_out.weight, weights["pixel_decoder.conv_out.weight"])


def test_training_checkpoint_gives_model_unless_ema_is_asked(tmp_path, fixture, config):
    """Their loader (DualVisionTower) takes "model" from a {"model", "ema"} checkpoint unless use_ema."""
    weights = fixture[2]
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in weights.items()}
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": weights, "ema": ema, "steps": 10}, path)
    key = "pixel_decoder.conv_out.weight"
    assert torch.equal(DualViTok.from_official(path, config).state_dict()[key], weights[key])
    assert torch.equal(DualViTok.from_official(path, config, use_ema=True).state_dict()[key], ema[key])
    with pytest.raises(ValueError, match="use_ema=True"):
        load_official_state_dict({"ema": ema})
    with pytest.raises(ValueError, match="no 'ema' entry"):
        load_official_state_dict({"model": weights}, use_ema=True)


def test_mismatched_checkpoint_names_the_keys(fixture, config):
    weights = dict(fixture[2])
    weights.pop("pixel_decoder.conv_out.bias")
    weights["pixel_decoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as err:
        DualViTok.from_official(weights, config)
    assert "pixel_decoder.conv_out.bias" in str(err.value)
    assert "pixel_decoder.extra.weight" in str(err.value)


def test_wrong_shape_is_reported(fixture):
    meta, _, weights = fixture
    bigger = DualViTokConfig.from_official(meta["dualvitok_config"], vit_config=meta["vit_config"],
                                           pixel_codebook_size=1024)
    with pytest.raises(ValueError, match="pixel_quantizer.frozen_codebook"):
        DualViTok.from_official(weights, bigger)


def test_unsupported_official_config_is_refused(fixture):
    meta = fixture[0]
    cfg = json.loads(json.dumps(meta["dualvitok_config"]))
    cfg["pixel_encoder"]["double_z"] = True
    with pytest.raises(ValueError, match="double_z"):
        DualViTokConfig.from_official(cfg, vit_config=meta["vit_config"])


def test_non_tensor_checkpoint_is_refused():
    with pytest.raises(ValueError, match="not tensors"):
        load_official_state_dict({"a": torch.zeros(1), "b": "text"})
