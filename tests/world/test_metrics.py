import numpy as np
import pytest

from illume_plus.world import examples
from illume_plus.world.metrics import (edit_chance, edit_success, generation_chance, generation_scores,
                                       preservation_psnr, vqa_scores)
from illume_plus.world.scene import Background, Scene, WorldObject
from illume_plus.world.text import QA

SAMPLE = examples("test", 60)


def test_perfect_generator_scores_one_and_constant_one_scores_near_chance():
    prompts = [e.scene for e in SAMPLE]
    perfect = generation_scores(prompts, [p.objects for p in prompts])
    assert all(v == 1.0 for v in perfect.values())
    constant = generation_scores(prompts, [prompts[0].objects] * len(prompts))
    chance = generation_chance(prompts)
    assert constant["generation_accuracy"] < 0.1 and chance["generation_accuracy_chance"] < 0.01
    assert abs(constant["generation_colour_accuracy"] - chance["generation_colour_accuracy_chance"]) < 0.1


def test_generation_attributes_by_hand():
    bg = Background(230, "plain", 0)
    prompt = Scene((WorldObject(0, "circle", "red", "small"), WorldObject(4, "star", "blue", "large")), bg)
    found = [WorldObject(0, "circle", "green", "small"), WorldObject(4, "star", "blue", "small")]
    scores = generation_scores([prompt], [found])
    assert scores["generation_accuracy"] == 0.0  # one colour wrong
    assert scores["generation_position_accuracy"] == 1.0
    assert scores["generation_colour_accuracy"] == 0.5
    assert scores["generation_kind_accuracy"] == 1.0
    assert scores["generation_size_accuracy"] == 0.5
    # size is not part of the GenEval-style exact match
    assert generation_scores([prompt], [[WorldObject(0, "circle", "red", "large"), *prompt.objects[1:]]])[
        "generation_accuracy"] == 1.0


def test_vqa_exact_match_and_baselines():
    questions = [QA("What colour?", "red", "colour"), QA("Is there?", "yes", "exists"), QA("Is there?", "no", "exists"),
                 QA("How many?", "three", "count")]
    scores = vqa_scores(questions, ["Red.", "yes", "yes", "3"])
    assert scores["vqa_accuracy"] == 0.75
    assert scores["vqa_exists_accuracy"] == 0.5
    assert scores["vqa_accuracy_chance"] == pytest.approx((1 / 6 + 1 / 2 + 1 / 2 + 1 / 5) / 4)
    assert scores["vqa_accuracy_majority"] == 0.75


def test_edit_success_and_chance():
    edits = [e.edit for e in SAMPLE]
    assert edit_success(edits, [e.target.objects for e in edits]) == 1.0
    assert edit_success(edits, [e.scene.objects for e in SAMPLE]) == 0.0  # doing nothing never succeeds
    assert edit_chance([e.scene for e in SAMPLE], edits) < 0.2


def test_preservation_psnr_by_hand():
    source = np.full((4, 4, 3), 100, np.uint8)
    output = source.copy()
    output[0, 0] = 0  # inside the edited region: ignored
    keep = np.ones((4, 4), bool)
    keep[0, 0] = False
    assert preservation_psnr(output, source, keep) == float("inf")
    output[3, 3] = 100 + 51  # one of 15 kept pixels off by 0.2 in every channel
    expected = 10 * np.log10(1 / (0.2 ** 2 / 15))
    assert preservation_psnr(output, source, keep) == pytest.approx(expected)
    with pytest.raises(ValueError, match="empty"):
        preservation_psnr(output, source, np.zeros((4, 4), bool))
