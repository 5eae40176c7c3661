"""Blocked nearest-code search (large codebooks are searched 32,768 rows at a time)."""

import torch

from illume_plus import DualViTok, DualViTokConfig
from illume_plus.tokenizer.quantizer import nearest_code, nearest_code_bruteforce


def test_block_search_equals_brute_force():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 32, generator=g)
    codebook = torch.randn(1000, 32, generator=g)
    expected = nearest_code_bruteforce(x, codebook)
    for block in (64, 333, 1000, 4096):  # blocks that divide, do not divide, cover, exceed the codebook
        assert torch.equal(nearest_code(x, codebook, block), expected)


def test_quantizer_blocks_match_one_block():
    torch.manual_seed(0)
    tok = DualViTok(DualViTokConfig.from_name("tiny", search_block_size=100)).eval()
    z = torch.randn(1, 32, 5, 7)
    blocked = tok.pixel_quantizer(z).indices
    tok.pixel_quantizer.search_block_size = tok.config.pixel_codebook_size
    assert torch.equal(blocked, tok.pixel_quantizer(z).indices)


def test_paper_preset_searches_in_blocks_of_32768():
    with torch.device("meta"):
        tok = DualViTok(DualViTokConfig.from_name("illume-plus"))
    assert tok.pixel_quantizer.codebook_size == 98304
    assert tok.pixel_quantizer.search_block_size == 32768
