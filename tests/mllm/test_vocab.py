import pytest
import torch

from illume_plus.mllm.text_tokenizer import build_tiny_text_tokenizer
from illume_plus.mllm.vocab import (TokenLayout, added_token_strings, extend_tokenizer, extended_vocab_rows,
                                    num_added_tokens)

FULL = dict(semantic_codebook_size=32768, pixel_codebook_size=98304)


def test_added_tokens_follow_the_authors_order(layout_fixture):
    tokens = added_token_strings(**FULL)
    head = layout_fixture["added_tokens_in_order_head"]
    tail = layout_fixture["added_tokens_in_order_tail"]
    assert len(tokens) == layout_fixture["added_tokens_count"] == 131111
    assert tokens[: len(head)] == head
    assert tokens[-len(tail):] == tail
    groups = layout_fixture["groups"]
    assert tokens[:7] == groups["structural"]
    assert tokens[7:23] == groups["height_tags"]
    assert tokens[23:39] == groups["width_tags"]
    assert tokens[39] == groups["level0_first_last"][0] and tokens[39 + 32767] == groups["level0_first_last"][1]
    assert tokens[39 + 32768] == groups["level1_first_last"][0]


def test_resize_rule_is_original_rows_plus_added(layout_fixture):
    standin = layout_fixture["standin_base"]
    assert extended_vocab_rows(standin["embedding_rows"], **FULL) == \
        layout_fixture["standin_extended"]["config_vocab_size_after_resize"]
    assert extended_vocab_rows(151936, **FULL) == 283047  # Qwen2.5-3B
    assert extended_vocab_rows(152064, **FULL) == 283175  # Qwen2.5-7B


def test_full_size_ids_match_the_authors(qwen_like_tokenizer, layout_fixture):
    layout = TokenLayout.from_tokenizer(qwen_like_tokenizer, **FULL)
    q = layout_fixture["qwen25"]
    assert layout.start_of_image == q["first_added_id"]
    assert layout.pixel_range[1] - 1 == q["last_added_id"]
    official = layout_fixture["qwen25_id_consistency_with_illume_py"]["illume_py_special_tokens_dict"]
    for name in ("start_of_image", "end_of_image", "start_of_level0", "end_of_level0", "start_of_level1",
                 "end_of_level1", "end_of_line"):
        assert getattr(layout, name) == official[name], name
    assert list(layout.semantic_range) == official["level0_range"]
    assert list(layout.pixel_range) == official["level1_range"]


def test_added_tokens_are_plain_not_special(tiny_tokenizer, tiny_layout):
    for token_id in (tiny_layout.start_of_image, tiny_layout.height_tag(64), tiny_layout.semantic_code_start):
        assert tiny_tokenizer.added_tokens_decoder[token_id].special is False
    im_end = tiny_tokenizer.added_tokens_decoder[tiny_layout.im_end]
    assert im_end.special is True


def test_layout_reads_ids_from_the_tokenizer(tiny_tokenizer, tiny_layout, tiny_config):
    assert tiny_layout.start_of_image == len(build_tiny_text_tokenizer())  # first added id = base length
    assert tiny_tokenizer.convert_ids_to_tokens(tiny_layout.width_tag(1024)) == "<width_1024>"
    assert tiny_tokenizer.convert_ids_to_tokens(tiny_layout.pixel_code_start + 511) == "<|image_level1_511|>"
    assert tiny_tokenizer.convert_ids_to_tokens(tiny_layout.im_start) == "<|im_start|>"
    assert tiny_layout.eos_token_id == tiny_layout.im_end
    assert len(tiny_tokenizer) - len(build_tiny_text_tokenizer()) == num_added_tokens(256, 512)
    assert tiny_config.vocab_size > max(tiny_layout.pixel_range)  # every id has an embedding row


def test_tags_are_tokenized_as_single_tokens(tiny_tokenizer, tiny_layout):
    ids = tiny_tokenizer("size <height_384><width_512>,", add_special_tokens=False).input_ids
    assert tiny_layout.resolution_tag_ids(384, 512) == ids[-3:-1]


def test_code_id_round_trip_and_range_errors(tiny_layout):
    codes = torch.tensor([[0, 255], [7, 100]])
    ids = tiny_layout.semantic_ids(codes)
    assert tiny_layout.is_semantic_code(ids).all() and not tiny_layout.is_pixel_code(ids).any()
    assert torch.equal(tiny_layout.semantic_codes(ids), codes)
    with pytest.raises(ValueError, match="semantic codes"):
        tiny_layout.semantic_ids(torch.tensor([256]))
    with pytest.raises(ValueError, match="pixel code range"):
        tiny_layout.pixel_codes(ids)
    with pytest.raises(ValueError, match="height_200"):
        tiny_layout.height_tag(200)


def test_text_banned_ids_cover_codes_and_markers_but_not_image_start(tiny_layout):
    banned = set(tiny_layout.text_banned_ids().tolist())
    assert tiny_layout.semantic_code_start in banned and tiny_layout.pixel_range[1] - 1 in banned
    assert tiny_layout.end_of_line in banned and tiny_layout.start_of_level1 in banned
    assert tiny_layout.start_of_image not in banned and tiny_layout.im_end not in banned


def test_unextended_tokenizer_gives_a_clear_error():
    with pytest.raises(ValueError, match="extend it first"):
        TokenLayout.from_tokenizer(build_tiny_text_tokenizer(), 256, 512)


def test_extending_twice_is_a_no_op_and_wrong_sizes_are_caught(tiny_config):
    tok = build_tiny_text_tokenizer()
    assert extend_tokenizer(tok, 256, 512) == num_added_tokens(256, 512)
    n = len(tok)
    assert extend_tokenizer(tok, 256, 512) == 0 and len(tok) == n
    with pytest.raises(ValueError, match="more semantic code"):
        TokenLayout.from_tokenizer(tok, 128, 512)
