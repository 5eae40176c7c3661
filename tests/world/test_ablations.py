"""`illume-plus ablate world`: arms trained once and shared, figures and the markdown table."""

import json

import pytest
import torch

from illume_plus.world.ablations import ABLATIONS, MLLM_ARMS, TOKENIZER_ARMS, main, markdown_table
from illume_plus.world.evaluate import tokenizer_figures

VIT = "artifacts/world/stage0_vit.safetensors"


def test_every_ablation_compares_against_the_base_arm_and_names_known_arms():
    for name, ablation in ABLATIONS.items():
        assert ablation.arms[0][1] == "base", name
        for _, tokenizer_arm, mllm_arm in ablation.arms:
            assert tokenizer_arm in TOKENIZER_ARMS
            assert mllm_arm is None or MLLM_ARMS[mllm_arm][0] == tokenizer_arm


@torch.no_grad()
def test_corrupted_reconstruction_equals_the_clean_one_at_rate_zero_and_differs_above():
    from illume_plus.tokenizer.model import DualViTok
    from illume_plus.world.recipe import world_tokenizer_config

    torch.manual_seed(0)
    tok = DualViTok(world_tokenizer_config()).eval()
    untouched = tokenizer_figures(tok, 4, corrupt_rate=0.0)
    assert untouched["corrupted_psnr"] == pytest.approx(untouched["tokenizer_psnr"], abs=1e-4)
    assert "corrupted_psnr" not in tokenizer_figures(tok, 4)
    corrupted = tokenizer_figures(tok, 4, corrupt_rate=0.5)
    assert corrupted["corrupted_psnr"] != pytest.approx(corrupted["tokenizer_psnr"], abs=1e-3)


def test_noise_ablation_trains_two_tokenizer_arms_writes_figures_and_reuses_them(tmp_path, capsys):
    argv = ["noise", "--out", str(tmp_path), "--vit", VIT, "--tokenizer-steps", "2", "--tokenizer-images", "16",
            "--eval-count", "2"]
    assert main(argv) == 0
    result = json.loads((tmp_path / "noise.json").read_text())
    assert [r["arm"] for r in result["rows"]] == ["noise injection", "no noise"]
    assert all(isinstance(r["corrupted_psnr"], float) for r in result["rows"])
    config = json.loads((tmp_path / "tokenizer_no_noise" / "final" / "config.json").read_text())
    assert config["noise_batch_rate"] == 0.0
    assert "| noise injection |" in capsys.readouterr().out
    stamp = (tmp_path / "tokenizer_base" / "figures.json").stat().st_mtime_ns
    assert main(argv) == 0  # finished arms are reused, not retrained or re-scored
    assert (tmp_path / "tokenizer_base" / "figures.json").stat().st_mtime_ns == stamp
    assert main([*argv[:-1], "3"]) == 0  # another --eval-count: re-scored on 6 scenes, not retrained
    assert json.loads((tmp_path / "tokenizer_base" / "figures.json").read_text())["tokenizer_images"] == 6


def test_markdown_table_lists_arms_and_the_chance_row():
    result = {"title": "t", "paper": "p", "rows": [
        {"arm": "a", "vqa_accuracy": 0.5, "vqa_accuracy_chance": 0.2, "vqa_accuracy_majority": 0.45,
         "tokenizer_psnr": 30.04},
        {"arm": "b", "vqa_accuracy": 0.25, "vqa_accuracy_chance": 0.2, "tokenizer_psnr": 20.0}]}
    table = markdown_table(result)
    assert "| a | 0.50 | 30.0 |" in table and "| b | 0.25 | 20.0 |" in table
    assert "| *chance* | 0.20 |  |" in table and "| *majority answer* | 0.45 |  |" in table


def test_discrete_input_needs_a_vision_tokenizer():
    from illume_plus.training.mllm import MllmDataSection, image_code_reader

    assert image_code_reader(MllmDataSection(), None, None) is None
    with pytest.raises(ValueError, match="needs model.vision_tokenizer"):
        image_code_reader(MllmDataSection(image_input="codes"), None, None)
    with pytest.raises(ValueError, match="must be 'continuous' or 'codes'"):
        image_code_reader(MllmDataSection(image_input="pixels"), None, None)
