"""The pixel CNNs' inference norms: channels-last fast path against references computed
independently (fp64 GroupNorm, the upsample-then-convolve definition of SpatialNorm)."""

import pytest
import torch
import torch.nn.functional as F

from illume_plus.tokenizer import DualViTok, DualViTokConfig
from illume_plus.tokenizer.pixel_norms import ChannelsLastGroupNorm, SpatialNorm

GROUPS = 4


def channels_last(x):
    return x.contiguous(memory_format=torch.channels_last)


def norm(channels):
    layer = ChannelsLastGroupNorm(GROUPS, channels, eps=1e-6)
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-0.5, 0.5)
    return layer


def reference_group_norm(layer, x):
    return F.group_norm(x.double(), layer.num_groups, layer.weight.double(), layer.bias.double(), layer.eps)


@pytest.mark.parametrize("shape", [(2, 16, 37, 53), (1, 8, 300, 300)])
def test_group_norm_fast_path_is_as_accurate_as_the_nchw_kernel(shape):
    torch.manual_seed(0)
    layer = norm(shape[1])
    # a large common offset: E[x^2] - mean^2 in fp32 (PyTorch's channels-last kernel) loses digits here
    x = torch.randn(shape) * 0.5 + 4.0
    truth = reference_group_norm(layer, x)
    with torch.no_grad():
        ours = layer(channels_last(x))
        nchw = layer(x)  # the native NCHW kernel, the authors' layout
    nchw_error = (nchw.double() - truth).abs().max().item()
    ours_error = (ours.double() - truth).abs().max().item()
    assert ours.is_contiguous(memory_format=torch.channels_last)
    assert ours_error < max(2 * nchw_error, 1e-6), (ours_error, nchw_error)


def test_group_norm_overwrite_and_silu():
    torch.manual_seed(1)
    layer = norm(8)
    x = channels_last(torch.randn(2, 8, 20, 24))
    expected = F.silu(reference_group_norm(layer, x))
    with torch.no_grad():
        kept = x.clone()
        out = layer(x, silu=True)
        assert torch.equal(x, kept)  # not asked to overwrite
        inplace = layer(x, overwrite=True, silu=True)
    assert inplace.data_ptr() == x.data_ptr()
    for result in (out, inplace):
        assert (result.double() - expected).abs().max().item() < 1e-5


@pytest.mark.parametrize("frozen", [False, True])
def test_group_norm_training_on_a_channels_last_map(frozen):
    """Autograd takes the NCHW kernel (PyTorch's channels-last backward crashed with a frozen
    weight): the gradient is the one of an NCHW map."""
    torch.manual_seed(4)
    layer = norm(8).requires_grad_(not frozen)
    x = torch.randn(2, 8, 6, 6)
    grads = []
    for layout in (x, channels_last(x)):
        leaf = layout.clone().requires_grad_()
        out = layer(leaf, silu=True)
        (out * torch.arange(out.numel()).view(out.shape)).sum().backward()
        grads.append(leaf.grad)
    assert (grads[0] - grads[1]).abs().max().item() <= 1e-6 * grads[0].abs().max().item(), (grads[0] - grads[1]).abs().max()


@pytest.mark.parametrize("code_size,size", [((5, 7), (20, 28)), ((6, 6), (6, 6)), ((4, 4), (6, 6))])
def test_spatial_norm_matches_its_definition(code_size, size):
    """norm(x) * conv_y(zq') + conv_b(zq'), zq' = zq resized (nearest) to x: the fast path works on
    the small map and broadcasts; the non-integer ratio (4 -> 6) takes the plain path."""
    torch.manual_seed(2)
    config = DualViTokConfig.from_name("tiny")
    layer = SpatialNorm(64, 12, config)
    layer.norm_layer = norm(64)
    x = torch.randn(2, 64, *size) + 1.0
    zq = torch.randn(2, 12, *code_size)
    zq_big = F.interpolate(zq, size=size, mode="nearest").double()
    expected = reference_group_norm(layer.norm_layer, x) * F.conv2d(zq_big, layer.conv_y.weight.double(),
                                                                    layer.conv_y.bias.double())
    expected = expected + F.conv2d(zq_big, layer.conv_b.weight.double(), layer.conv_b.bias.double())
    with torch.no_grad():
        fast = layer(channels_last(x), channels_last(zq), silu=True)
        plain = layer(x, zq)
    assert (fast.double() - F.silu(expected)).abs().max().item() < 1e-5
    assert (plain.double() - expected).abs().max().item() < 1e-5


def test_pixel_convolutions_run_channels_last_in_inference():
    """A conv fed an NCHW map (e.g. after an op that broke the layout) is much slower: every
    convolution of both pixel CNNs must see channels-last input."""
    torch.manual_seed(3)
    tok = DualViTok(DualViTokConfig.from_name("tiny")).eval()
    seen = []
    for module in (*tok.pixel_encoder.modules(), *tok.pixel_decoder.modules()):
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_pre_hook(
                lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)
                                            or args[0].shape[-2:] == (1, 1)))
    with torch.no_grad():
        enc = tok.encode(torch.rand(1, 3, 64, 64) * 2 - 1)
        assert enc.pixel_features.is_contiguous()
        image = tok.decode(enc.semantic_ids, enc.pixel_ids)
    assert image.is_contiguous() and len(seen) > 20
    assert all(seen), f"{seen.count(False)} of {len(seen)} convolutions got NCHW input"


def test_group_norm_fast_path_in_bfloat16():
    """Statistics in fp32 for a bf16 map (bf16 sums would lose the variance), output in bf16."""
    torch.manual_seed(5)
    layer = norm(16).to(torch.bfloat16)
    x = (torch.randn(2, 16, 40, 40) * 0.5 + 3.0).to(torch.bfloat16)
    with torch.no_grad():
        ours = layer(channels_last(x), silu=True)
        native = F.silu(layer(x))  # PyTorch's NCHW kernel (fp32 statistics)
    assert ours.dtype == torch.bfloat16
    # both round to bf16 (8 bits): a few units of the last place apart at most
    assert (ours.float() - native.float()).abs().max().item() < 0.05
