import numpy as np
from PIL import Image

from illume_plus.data import render_procedural_image, write_procedural_images


def test_same_seed_same_image_and_different_seed_different_image():
    a = np.asarray(render_procedural_image(5, 40, 72))
    assert a.shape == (40, 72, 3)
    assert np.array_equal(a, np.asarray(render_procedural_image(5, 40, 72)))
    assert not np.array_equal(a, np.asarray(render_procedural_image(6, 40, 72)))
    assert a.std() > 0  # not a blank canvas


def test_any_size_including_tiny_and_odd():
    for h, w in [(1, 1), (7, 300), (33, 17)]:
        assert render_procedural_image(0, h, w).size == (w, h)


def test_written_files_are_readable_pngs(tmp_path):
    paths = write_procedural_images(tmp_path, 3, seed=10, sizes=[(24, 32), (32, 24)])
    assert len(paths) == 3
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size in [(32, 24), (24, 32)]
