from dataclasses import dataclass, field

import pytest

from illume_plus.training.config import apply_overrides, load_config, to_dict


@dataclass
class Inner:
    lr: float = 1e-4
    betas: list = field(default_factory=lambda: [0.9, 0.95])


@dataclass
class Recipe:
    optim: Inner = field(default_factory=Inner)
    name: str = "x"
    extra: dict = field(default_factory=dict)


def test_yaml_then_overrides_then_dataclasses(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("optim:\n  lr: 0.001\nname: base\n")
    config = load_config(Recipe, path, ["optim.betas=[0.5, 0.6]", "name=changed", "extra.deep.key=null"])
    assert config.optim.lr == 0.001 and config.optim.betas == [0.5, 0.6]
    assert config.name == "changed" and config.extra == {"deep": {"key": None}}
    assert to_dict(config)["optim"] == {"lr": 0.001, "betas": [0.5, 0.6]}


def test_unknown_keys_and_malformed_overrides_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"optim.*'lrr'"):
        load_config(Recipe, None, ["optim.lrr=1"])
    with pytest.raises(ValueError, match="section.key=value"):
        apply_overrides({}, ["no_equals_sign"])
    with pytest.raises(ValueError, match="is a value"):
        apply_overrides({"name": "x"}, ["name.sub=1"])
    with pytest.raises(FileNotFoundError):
        load_config(Recipe, tmp_path / "missing.yaml")
