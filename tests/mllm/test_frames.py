import pytest
import torch

from illume_plus.mllm.frames import FORCED, FrameSpec, frame_code_levels, frame_ids, parse_frame
from illume_plus.mllm.vocab import TokenLayout
from illume_plus.tokenizer.config import DualViTokConfig

FULL = dict(semantic_codebook_size=32768, pixel_codebook_size=98304)


@pytest.fixture(scope="module")
def full_layout(qwen_like_tokenizer):
    return TokenLayout.from_tokenizer(qwen_like_tokenizer, **FULL)


@pytest.mark.parametrize("name", ["512x512", "384x512", "224x336"])
def test_frames_reproduce_the_authors_sequences(name, layout_fixture, qwen_like_tokenizer, full_layout):
    example = layout_fixture["examples"][name]
    height, width = example["target_hw"]
    spec = FrameSpec.for_size(height, width, DualViTokConfig.from_name("illume-plus"))
    assert list(spec.semantic_grid) == example["semantic_grid_hw"]
    assert list(spec.pixel_grid) == example["pixel_grid_hw"]
    assert spec.num_tokens == example["expected_n_SOI_to_EOI"]

    semantic = torch.tensor(example["semantic_indices"])
    pixel = torch.tensor(example["pixel_indices"])
    expected_tokens = example["assistant_target_tokens"]
    if example["ratio_tag_tokens_exist_in_vocab"]:
        frame = frame_ids(full_layout, spec, semantic, pixel, resolution_tag=True)
        assert frame.ids.tolist() == example["assistant_target_qwen25_ids"]
    else:  # no tag tokens for this size: compare from <start_of_image> on
        frame = frame_ids(full_layout, spec, semantic, pixel)
        skip = len(expected_tokens) - spec.num_tokens
        expected_tokens = expected_tokens[skip:]
        assert frame.ids.tolist() == example["assistant_target_qwen25_ids"][skip:]
    assert qwen_like_tokenizer.convert_ids_to_tokens(frame.ids.tolist()) == expected_tokens


def test_parse_frame_inverts_frame_ids(tiny_layout):
    spec = FrameSpec.for_size(64, 96, DualViTokConfig.from_name("tiny"))
    assert spec.semantic_grid == (2, 3) and spec.pixel_grid == (4, 6)
    semantic = torch.randint(0, 256, spec.semantic_grid)
    pixel = torch.randint(0, 512, spec.pixel_grid)
    ids = frame_ids(tiny_layout, spec, semantic, pixel).ids
    s, p = parse_frame(tiny_layout, ids, spec)
    assert torch.equal(s, semantic) and torch.equal(p, pixel)

    broken = ids.clone()
    broken[2 + 3] = tiny_layout.semantic_code_start  # where the first <end_of_line> belongs
    with pytest.raises(ValueError, match="position 5"):
        parse_frame(tiny_layout, broken, spec)
    with pytest.raises(ValueError, match="tokens"):
        parse_frame(tiny_layout, ids[:-1], spec)


def test_continuous_frame_slots_point_at_placeholders(tiny_layout):
    spec = FrameSpec.for_size(64, 64, DualViTokConfig.from_name("tiny"))
    frame = frame_ids(tiny_layout, spec, resolution_tag=True)
    assert frame.ids[:4].tolist() == [*tiny_layout.resolution_tag_ids(64, 64), tiny_layout.start_of_image,
                                      tiny_layout.start_of_level0]
    assert frame.semantic_slots.numel() == 4 and frame.pixel_slots.numel() == 16
    assert (frame.ids[frame.semantic_slots] == tiny_layout.pad_token_id).all()
    assert (frame.ids[frame.pixel_slots] == tiny_layout.pad_token_id).all()
    # every non-slot position is a structural or tag token
    others = torch.ones(len(frame.ids), dtype=torch.bool)
    others[frame.semantic_slots] = others[frame.pixel_slots] = False
    assert (frame.ids[others] != tiny_layout.pad_token_id).all()
    # slots are row-major: the first semantic row is followed by <end_of_line>
    assert frame.ids[frame.semantic_slots[1] + 1] == tiny_layout.end_of_line


def test_code_levels_mark_slots():
    spec = FrameSpec(64, 64, (2, 2), (4, 4))
    levels = frame_code_levels(spec)
    assert levels.numel() == spec.num_tokens
    assert (levels == 0).sum() == 4 and (levels == 1).sum() == 16
    assert levels[0] == FORCED and levels[2] == 0 and levels[-1] == FORCED


def test_wrong_grid_or_size_is_rejected(tiny_layout):
    cfg = DualViTokConfig.from_name("tiny")
    with pytest.raises(ValueError, match="multiple of 16"):
        FrameSpec.for_size(100, 64, cfg)
    spec = FrameSpec.for_size(64, 64, cfg)
    with pytest.raises(ValueError, match="shape"):
        frame_ids(tiny_layout, spec, torch.zeros(3, 2, dtype=torch.long), torch.zeros(4, 4, dtype=torch.long))
