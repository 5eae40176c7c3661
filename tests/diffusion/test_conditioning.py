import pytest
import torch

from illume_plus.diffusion import (CodeEmbedder, CodeEmbedderConfig, DiffusionDecoderConfig, drop_code_branches,
                                   latent_conditioning, perturb_token_ids, size_condition_index, size_time_ids)
from illume_plus.tokenizer.config import DualViTokConfig
from illume_plus.tokenizer.preprocess import semantic_input_size
from illume_plus.training.decoder import STAGE2_BUCKETS

# SPEC §4, (width, height)
SPEC_TABLE = [(1024, 1024), (768, 1024), (1024, 768), (512, 2048), (2048, 512), (640, 1920), (1920, 640),
              (768, 1536), (1536, 768), (768, 1152), (1152, 768), (512, 512)]


def tiny_embedder():
    return CodeEmbedder(CodeEmbedderConfig(semantic_codebook_size=256, pixel_codebook_size=512))


def test_default_size_table_is_spec():
    assert [tuple(e) for e in DiffusionDecoderConfig().size_table] == SPEC_TABLE


@pytest.mark.parametrize("index", range(12))
def test_time_id_is_table_index(index):
    width, height = SPEC_TABLE[index]
    assert size_condition_index(height, width, SPEC_TABLE) == index
    expected = torch.tensor([[0, 0, 0, 0, 0, index]] * 3, dtype=torch.float32)
    assert torch.equal(size_time_ids(index, 3), expected)


def test_unknown_size_takes_nearest_aspect_or_errors():
    # 384x512 (HxW) is 4:3 wide, like (width 1024, height 768) -> index 2
    assert size_condition_index(384, 512, SPEC_TABLE) == 2
    assert size_condition_index(640, 640, SPEC_TABLE) == 0  # square but not 512²: first square entry
    assert size_condition_index(256, 1024, SPEC_TABLE) == 4  # 1:4 wide -> (2048, 512)
    with pytest.raises(ValueError, match="not in the decoder's size table"):
        size_condition_index(384, 512, SPEC_TABLE, unknown_size="error")


@pytest.mark.parametrize("height,width", STAGE2_BUCKETS)
def test_conditioning_shapes_for_every_bucket(height, width):
    """Output (H, W) <- token image (H/2, W/2): pixel grid H/32 x W/32, latent H/8 x W/8."""
    embedder = tiny_embedder()
    token_h, token_w = height // 2, width // 2
    mapping = DualViTokConfig.from_name("tiny").resolution_mapping
    sem_h, sem_w = (s // 28 for s in semantic_input_size(token_h, token_w, mapping, 28))
    semantic_ids = torch.randint(0, 256, (2, sem_h, sem_w))
    pixel_ids = torch.randint(0, 512, (2, token_h // 16, token_w // 16))
    fused = embedder(semantic_ids, pixel_ids)
    assert fused.shape == (2, 64, height // 32, width // 32) and fused.dtype == torch.float32
    cond = latent_conditioning(fused, (height // 8, width // 8))
    assert cond.shape == (2, 64, height // 8, width // 8)
    # nearest: each code covers a 4x4 block of latents
    assert torch.equal(cond[:, :, ::4, ::4], fused)
    assert torch.equal(cond[:, :, 3::4, 3::4], fused)
    assert size_condition_index(height, width, SPEC_TABLE, unknown_size="error") == SPEC_TABLE.index((width, height))


def test_embedder_rejects_bad_grids():
    embedder = tiny_embedder()
    with pytest.raises(ValueError, match="batch sizes"):
        embedder(torch.zeros(2, 3, 3, dtype=torch.long), torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, h, w\)"):
        embedder(torch.zeros(3, 3, dtype=torch.long), torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="must lie in"):
        embedder(torch.full((1, 3, 3), 256), torch.zeros(1, 4, 4, dtype=torch.long))


def test_embedder_copies_tokenizer_codebooks_without_touching_it():
    tokenizer = torch.nn.Module()
    tokenizer.semantic_quantizer = tiny_embedder().semantic_quantizer
    tokenizer.pixel_quantizer = tiny_embedder().pixel_quantizer
    tokenizer.half()  # a tokenizer kept in fp16 by its owner
    before = {k: v.clone() for k, v in tokenizer.state_dict().items()}
    embedder = CodeEmbedder.from_tokenizer(tokenizer)
    embedder.to(torch.bfloat16)  # whatever happens to the copy...
    for key, value in tokenizer.state_dict().items():  # ...the tokenizer is unchanged
        assert value.dtype == torch.float16 and torch.equal(value, before[key])
    ids = torch.randint(0, 256, (1, 2, 2)), torch.randint(0, 512, (1, 3, 3))
    fresh = CodeEmbedder.from_tokenizer(tokenizer)
    assert fresh(*ids).dtype == torch.float32
    expected = tokenizer.pixel_quantizer.code_transform(tokenizer.pixel_quantizer.frozen_codebook).float()
    torch.testing.assert_close(fresh(*ids)[0, 32:, 0, 0], expected[ids[1][0, 0, 0]], atol=1e-3, rtol=0)


def test_embedder_from_official_checkpoint_file(tmp_path, sdxl_fixture):
    _, tensors = sdxl_fixture
    state = {k.replace("dualvitok_weights.", ""): v for k, v in tensors.items() if k.startswith("dualvitok_weights.")}
    state["pixel_encoder.conv_in.weight"] = torch.zeros(1)  # other tokenizer weights are ignored
    torch.save({"model": state}, tmp_path / "pytorch_model.bin")
    embedder = CodeEmbedder.from_tokenizer_checkpoint(tmp_path)
    assert embedder.config.semantic_codebook_size == 256 and embedder.config.pixel_codebook_size == 512
    assert torch.equal(embedder.pixel_quantizer.frozen_codebook, state["pixel_quantizer.frozen_codebook"])
    torch.save({"unrelated.weight": torch.zeros(1)}, tmp_path / "other.bin")
    with pytest.raises(KeyError, match="semantic_quantizer"):
        CodeEmbedder.from_tokenizer_checkpoint(tmp_path / "other.bin")


def test_perturb_token_ids_rates():
    generator = torch.Generator().manual_seed(0)
    ids = torch.zeros(2000, 8, 8, dtype=torch.long)
    out = perturb_token_ids(ids, 1000, sample_prob=0.5, token_prob=0.1, generator=generator)
    changed = out != 0  # a random code equals 0 with probability 1e-3: negligible
    samples_touched = changed.flatten(1).any(1)
    assert 0.45 < samples_touched.float().mean() < 0.55
    assert 0.08 < changed[samples_touched].float().mean() < 0.12
    assert out.max() < 1000 and torch.equal(ids, torch.zeros_like(ids))  # input untouched
    assert torch.equal(perturb_token_ids(ids, 1000, 0.0, 0.1), ids)


def test_drop_code_branches_zeroes_whole_branches():
    fused = torch.ones(4000, 64, 2, 2)
    out = drop_code_branches(fused, 32, semantic_drop_prob=0.1, pixel_drop_prob=0.5,
                             generator=torch.Generator().manual_seed(0))
    semantic_dropped = (out[:, :32] == 0).flatten(1).all(1)
    pixel_dropped = (out[:, 32:] == 0).flatten(1).all(1)
    # each branch is either fully kept or fully dropped
    assert torch.equal((out[:, :32] == 1).flatten(1).all(1), ~semantic_dropped)
    assert torch.equal((out[:, 32:] == 1).flatten(1).all(1), ~pixel_dropped)
    assert 0.08 < semantic_dropped.float().mean() < 0.12
    assert 0.46 < pixel_dropped.float().mean() < 0.54
    assert 0.03 < (semantic_dropped & pixel_dropped).float().mean() < 0.07  # independent
