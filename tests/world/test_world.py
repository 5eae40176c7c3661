import numpy as np
import pytest

from illume_plus.world import COLOURS, KINDS, SIZES, example, examples, render_scene, split_seed
from illume_plus.world.scene import Background, Scene, WorldObject
from illume_plus.world.splits import SPLIT_SIZE
from illume_plus.world.text import NUMBER_WORDS, left_neighbour, normalise_answer


def test_examples_are_deterministic_by_seed():
    a, b = example("train", 7), example("train", 7)
    assert a == b
    assert np.array_equal(np.asarray(a.image()), np.asarray(b.image()))
    assert np.array_equal(np.asarray(a.edited_image()), np.asarray(b.edited_image()))


def test_splits_use_disjoint_seeds():
    seeds = {split: {split_seed(split, i) for i in (0, 1, 2, SPLIT_SIZE - 1)} for split in ("train", "val", "test")}
    assert not seeds["train"] & seeds["val"] and not seeds["train"] & seeds["test"] and not seeds["val"] & seeds["test"]
    assert example("train", 0).scene != example("test", 0).scene
    with pytest.raises(ValueError, match="unknown split"):
        split_seed("dev", 0)
    with pytest.raises(ValueError, match="index"):
        split_seed("train", SPLIT_SIZE)


def test_world_covers_its_attributes():
    objects = [o for e in examples("train", 300) for o in e.scene.objects]
    assert {o.kind for o in objects} == set(KINDS) and len(KINDS) >= 5
    assert {o.colour for o in objects} == set(COLOURS) and len(COLOURS) >= 6
    assert {o.size for o in objects} == set(SIZES) == {"small", "large"}
    assert {o.cell for o in objects} == set(range(9))
    counts = {len(e.scene.objects) for e in examples("train", 300)}
    assert counts == {1, 2, 3, 4}


def test_caption_names_every_object_and_edit_target_is_exact():
    e = example("val", 3)
    for o in e.scene.objects:
        assert f"{o.size} {o.colour} {o.kind}" in e.caption
    changed = set(e.edit.cells)
    # Outside the cells the edit may touch, source and target scenes agree object by object.
    for cell in set(range(9)) - changed:
        assert e.scene.object_at(cell) == e.edit.target.object_at(cell)
    assert e.scene.keys() != e.edit.target.keys()


def test_scene_rejects_bad_layouts():
    bg = Background(230, "plain", 0)
    with pytest.raises(ValueError, match="share a cell"):
        Scene((WorldObject(0, "circle", "red", "small"), WorldObject(0, "star", "blue", "large")), bg)
    with pytest.raises(ValueError, match="1-4 objects"):
        Scene((), bg)


def test_render_draws_objects_in_their_cells_on_the_background():
    scene = Scene((WorldObject(4, "square", "blue", "large"),), Background(230, "plain", 0))
    image = np.asarray(render_scene(scene))
    assert image.shape == (128, 128, 3)
    assert tuple(image[64, 64]) == (40, 90, 225)  # the square's colour at the centre
    assert tuple(image[5, 5]) == (230, 230, 230)  # plain background


def test_left_of_and_answer_normalisation():
    scene = Scene((WorldObject(3, "star", "red", "small"), WorldObject(5, "circle", "blue", "large")),
                  Background(230, "plain", 0))
    assert left_neighbour(scene, scene.object_at(5)) == scene.object_at(3)
    assert left_neighbour(scene, scene.object_at(3)) is None
    assert normalise_answer("The Red star.") == "red star"
    assert normalise_answer("3") == NUMBER_WORDS[3] == normalise_answer("three")
