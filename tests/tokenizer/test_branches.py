"""Single-branch DualViTok (`branches`, the paper's tokenizer ablation): the dropped branch's codes
are id 0 and never reach the decoder."""

import pytest
import torch

from illume_plus import DualViTok, DualViTokConfig


def tokenizer(branches):
    torch.manual_seed(0)
    return DualViTok(DualViTokConfig.from_name("tiny", branches=branches)).eval()


def random_ids(tok, images, seed):
    g = torch.Generator().manual_seed(seed)
    enc = tok.encode(images)
    return (torch.randint(0, tok.config.semantic_codebook_size, enc.semantic_ids.shape, generator=g),
            torch.randint(0, tok.config.pixel_codebook_size, enc.pixel_ids.shape, generator=g))


@torch.no_grad()
@pytest.mark.parametrize("branches,dropped", [("semantic", "pixel"), ("pixel", "semantic")])
def test_the_dropped_branch_is_constant_and_ignored_by_the_decoder(branches, dropped):
    tok = tokenizer(branches)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    enc = tok.encode(x)
    assert (getattr(enc, f"{dropped}_ids") == 0).all()
    kept = "semantic" if dropped == "pixel" else "pixel"
    assert getattr(enc, f"{kept}_ids").unique().numel() > 1  # the kept branch still carries codes
    semantic, pixel = random_ids(tok, x, seed=2)
    other_semantic, other_pixel = random_ids(tok, x, seed=3)
    out = tok.decode(semantic, pixel)
    if dropped == "pixel":
        assert torch.equal(out, tok.decode(semantic, other_pixel))
        assert not torch.allclose(out, tok.decode(other_semantic, pixel))
    else:
        assert torch.equal(out, tok.decode(other_semantic, pixel))
        assert not torch.allclose(out, tok.decode(semantic, other_pixel))


@torch.no_grad()
def test_dual_decoding_reads_both_branches():
    tok = tokenizer("dual")
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    semantic, pixel = random_ids(tok, x, seed=2)
    other_semantic, other_pixel = random_ids(tok, x, seed=3)
    out = tok.decode(semantic, pixel)
    assert not torch.allclose(out, tok.decode(other_semantic, pixel))
    assert not torch.allclose(out, tok.decode(semantic, other_pixel))


def test_unknown_branches_are_rejected():
    with pytest.raises(ValueError, match="branches must be one of"):
        DualViTokConfig.from_name("tiny", branches="both")
