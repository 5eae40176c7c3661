from illume_plus.world import examples, render_scene
from illume_plus.world.detector import detect_objects
from illume_plus.world.scene import KINDS, Background, Scene, WorldObject


def test_detector_reads_clean_renders_exactly():
    sample = examples("test", 40)
    right = sum(sorted(detect_objects(e.image())) == sorted(e.scene.objects) for e in sample)
    assert right == len(sample)


def test_detector_tells_every_kind_apart_at_both_sizes():
    for kind in KINDS:
        for size in ("small", "large"):
            scene = Scene((WorldObject(0, kind, "green", size), WorldObject(8, kind, "purple", size)),
                          Background(240, "texture", 1))
            assert detect_objects(render_scene(scene)) == sorted(scene.objects)


def test_detector_sees_nothing_on_an_empty_background():
    from PIL import Image

    assert detect_objects(Image.new("RGB", (128, 128), (228, 228, 228))) == []
