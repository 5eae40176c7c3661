import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from illume_plus.losses import LPIPS, build_perceptual_loss

# The public torchvision vgg16 `features` convs: index -> (in, out); written out from the
# VGG16 "D" configuration, independently of the module under test.
VGG16_CONVS = {0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128), 10: (128, 256), 12: (256, 256),
               14: (256, 256), 17: (256, 512), 19: (512, 512), 21: (512, 512), 24: (512, 512),
               26: (512, 512), 28: (512, 512)}
LIN_CHANNELS = [64, 128, 256, 512, 512]
# LPIPS v0.1 input scaling (published constants).
SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """Random weights saved in the two public layouts (the real files are not downloadable here)."""
    g = torch.Generator().manual_seed(1)
    vgg = {}
    for i, (cin, cout) in VGG16_CONVS.items():
        vgg[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2.0 / (9 * cin)) ** 0.5
        vgg[f"features.{i}.bias"] = torch.randn(cout, generator=g) * 0.01
    vgg["classifier.0.weight"] = torch.randn(4, 4, generator=g)  # real one is [4096, 25088]; ignored anyway
    vgg["classifier.6.bias"] = torch.randn(4, generator=g)
    lin = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate(LIN_CHANNELS)}
    root = tmp_path_factory.mktemp("lpips")
    torch.save(vgg, root / "vgg16-397923af.pth")
    torch.save(lin, root / "vgg.pth")
    return root / "vgg16-397923af.pth", root / "vgg.pth", vgg, lin


@pytest.fixture(scope="module")
def lpips(weight_files):
    return LPIPS.from_pretrained(weight_files[0], weight_files[1])


def reference_lpips(vgg, lin, x, y):
    """LPIPS v0.1 written from its definition with plain functional ops."""
    def taps(img):
        h, out = (img - SHIFT) / SCALE, []
        for stage in ([0, 2], [5, 7], [10, 12, 14], [17, 19, 21], [24, 26, 28]):
            if out:
                h = F.max_pool2d(h, 2)
            for i in stage:
                h = F.relu(F.conv2d(h, vgg[f"features.{i}.weight"], vgg[f"features.{i}.bias"], padding=1))
            out.append(h)
        return out

    total = 0
    for k, (a, b) in enumerate(zip(taps(x), taps(y))):
        a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        total = total + F.conv2d((a - b) ** 2, lin[f"lin{k}.model.1.weight"]).mean(dim=(1, 2, 3))
    return total


def test_public_files_load_strictly(lpips, weight_files):
    _, _, vgg, lin = weight_files
    state = lpips.state_dict()
    for key, value in vgg.items():
        if key.startswith("features."):
            assert torch.equal(state[key], value), key
    for key, value in lin.items():
        assert torch.equal(state[key], value), key
    assert set(state) == {k for k in vgg if k.startswith("features.")} | set(lin)
    # torchvision's vgg16 has 138,357,544 parameters, 14,714,688 of them in `features`.
    assert sum(p.numel() for p in lpips.features.parameters()) == 14_714_688


def test_matches_the_lpips_definition(lpips, weight_files):
    _, _, vgg, lin = weight_files
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(lpips(x, y), reference_lpips(vgg, lin, x, y), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("corrupt", ["drop_vgg_key", "extra_vgg_key", "lin_wrong_shape", "drop_lin_key"])
def test_incomplete_or_foreign_files_are_refused(weight_files, tmp_path, corrupt):
    vgg_path, lin_path, vgg, lin = weight_files
    vgg, lin = dict(vgg), dict(lin)
    if corrupt == "drop_vgg_key":
        del vgg["features.28.bias"]
    elif corrupt == "extra_vgg_key":
        vgg["features.30.weight"] = torch.zeros(1)
    elif corrupt == "lin_wrong_shape":
        lin["lin2.model.1.weight"] = torch.zeros(1, 128, 1, 1)
    else:
        del lin["lin4.model.1.weight"]
    torch.save(vgg, tmp_path / "vgg16.pth")
    torch.save(lin, tmp_path / "lin.pth")
    with pytest.raises(ValueError, match="features.28.bias|features.30.weight|lin2|lin4"):
        LPIPS.from_pretrained(tmp_path / "vgg16.pth", tmp_path / "lin.pth")


def test_missing_file_is_named(weight_files, tmp_path):
    vgg_path, lin_path, _, _ = weight_files
    with pytest.raises(FileNotFoundError, match="nowhere_vgg16.pth"):
        LPIPS.from_pretrained(tmp_path / "nowhere_vgg16.pth", lin_path)
    with pytest.raises(FileNotFoundError, match="nowhere_lin.pth"):
        LPIPS.from_pretrained(vgg_path, tmp_path / "nowhere_lin.pth")


def test_distance_is_zero_symmetric_and_positive(lpips):
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(lpips(x, x), torch.zeros(2))
        d_xy, d_yx = lpips(x, y), lpips(y, x)
    torch.testing.assert_close(d_xy, d_yx)
    assert d_xy.shape == (2,) and (d_xy > 0).all()


def test_gradient_reaches_input_not_weights(lpips):
    x = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_()
    y = torch.rand(1, 3, 32, 32) * 2 - 1
    lpips(x, y).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in lpips.parameters())


def test_parent_train_mode_keeps_lpips_in_eval(lpips):
    parent = nn.ModuleDict({"lpips": lpips})
    parent.train()
    assert not lpips.training and not any(m.training for m in lpips.modules())


def test_factory_warns_and_returns_none_without_weights(weight_files):
    with pytest.warns(UserWarning, match="OFF"):
        assert build_perceptual_loss() is None
    with pytest.warns(UserWarning, match="OFF"):
        assert build_perceptual_loss(vgg_path=weight_files[0]) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(build_perceptual_loss(weight_files[0], weight_files[1]), LPIPS)
