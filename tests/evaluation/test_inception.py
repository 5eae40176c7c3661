import pytest
import torch

from illume_plus.evaluation import InceptionV3

# A few entries of the public FID weight file pt_inception-2015-12-05-6726825d.pth.
PUBLIC_SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_1a_3x3.bn.running_var": (32,),
    "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
    "Mixed_5b.branch1x1.conv.weight": (64, 192, 1, 1),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
    "Mixed_7b.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}


@pytest.fixture(scope="module")
def public_file(tmp_path_factory):
    """Random weights in the public layout (no `num_batches_tracked`, like old PyTorch files),
    scaled so that activations stay finite through the 94 conv layers."""
    g = torch.Generator().manual_seed(3)
    state = {}
    for key, value in InceptionV3().state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.endswith("conv.weight"):
            fan_in = value[0].numel()
            state[key] = torch.randn(value.shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=g) + 0.5
        elif key.endswith("bn.weight"):
            state[key] = 1.0 + 0.1 * torch.randn(value.shape, generator=g)
        else:
            state[key] = 0.1 * torch.randn(value.shape, generator=g)
    path = tmp_path_factory.mktemp("inception") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def inception(public_file):
    return InceptionV3.from_pretrained(public_file[0])


def test_parameter_layout_is_the_public_one():
    state = InceptionV3().state_dict()
    for key, shape in PUBLIC_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    # 94 conv+BN units x (conv weight, BN weight, bias, running mean, running var) + fc weight, bias.
    assert len([k for k in state if not k.endswith("num_batches_tracked")]) == 94 * 5 + 2
    # torchvision's inception_v3 has 27,161,264 parameters; minus its aux head (3,326,696),
    # plus 8 more classes in fc (8 * 2049): 23,850,960.
    assert sum(p.numel() for p in InceptionV3().parameters()) == 23_850_960


def test_public_file_round_trips_strictly(public_file, inception):
    _, state = public_file
    loaded = inception.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


@pytest.mark.parametrize("corrupt", ["missing", "unexpected", "aux_head"])
def test_foreign_layout_is_refused(public_file, tmp_path, corrupt):
    state = dict(public_file[1])
    if corrupt == "missing":
        del state["Mixed_6c.branch7x7_1.bn.running_mean"]
    elif corrupt == "unexpected":
        state["Mixed_8a.conv.weight"] = torch.zeros(1)
    else:
        state["AuxLogits.fc.weight"] = torch.zeros(1008, 768)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="Mixed_6c.branch7x7_1.bn.running_mean|Mixed_8a|AuxLogits"):
        InceptionV3.from_pretrained(tmp_path / "bad.pth")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="pt_inception.pth"):
        InceptionV3.from_pretrained(tmp_path / "pt_inception.pth")


def test_features_at_any_size_and_eval_determinism(inception):
    inception.train()  # must stay in eval: BN statistics are fixed
    assert not inception.training
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        pair = inception(images)
        single = inception(images[:1])
        other_size = inception(torch.rand(1, 3, 80, 120))
    assert pair.features.shape == (2, 2048) and other_size.features.shape == (1, 2048)
    assert pair.logits.shape == (2, 1008) and pair.logits_unbiased.shape == (2, 1008)
    assert torch.isfinite(pair.features).all() and (pair.features >= 0).all()  # pooled ReLUs
    # Batch statistics would make an image's features depend on its batch-mates.
    torch.testing.assert_close(single.features[0], pair.features[0], rtol=1e-4, atol=1e-5)


def test_refuses_images_outside_unit_range(inception):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        inception(torch.rand(1, 3, 32, 32) * 2 - 1)
