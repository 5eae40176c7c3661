"""The shipped default model (the shape world's, trained by `illume-plus train world`), re-measured
on fresh held-out scenes: test examples from FRESH on, used neither in training (another split)
nor for the figures in docs/world.md (test examples 0-199). Small samples keep this fast, so the
thresholds sit below the measured figures by about two binomial standard deviations."""

import pytest
import torch

from illume_plus.pipeline import Pipeline
from illume_plus.world.evaluate import mllm_figures, tokenizer_figures

FRESH = 50_000
# measured on test examples 0-99 (docs/world.md) -> threshold here (16 fresh examples each)
THRESHOLDS = {
    "tokenizer_psnr": 31.0,                     # 33.3 dB
    "detector_accuracy_reconstructed": 0.3,     # 0.57
    "generation_position_accuracy": 0.7,        # 0.91 (chance 0.28)
    "generation_count_accuracy": 0.5,           # 0.77 (chance 0.25)
    "generation_colour_accuracy": 0.35,         # 0.60 (chance 0.05)
    "vqa_accuracy": 0.3,                        # 0.55 (chance 0.18, majority answer 0.49)
    "edit_preservation_psnr": 21.0,             # 23.8 dB
}


@pytest.fixture(scope="module")
def shipped():
    torch.set_num_threads(2)
    return Pipeline.from_pretrained(device="cpu")


def test_the_default_model_is_the_trained_world_model(shipped):
    assert shipped.card.trained is True
    assert shipped.default_size() == ((128, 128), False)


def test_shipped_model_meets_its_thresholds_on_fresh_scenes(shipped):
    figures = tokenizer_figures(shipped.vision_tokenizer, 16, start=FRESH)
    figures.update(mllm_figures(shipped, 16, start=FRESH))
    below = {k: (round(figures[k], 3), t) for k, t in THRESHOLDS.items() if figures[k] < t}
    assert not below, f"figures below their thresholds (value, threshold): {below}"
    # a model that ignores its prompt cannot pass: well above the prior's chance levels
    for key in ("generation_position_accuracy", "generation_colour_accuracy"):
        assert figures[key] > 2 * figures[f"{key}_chance"], key
