import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from illume_plus.data import (
    BucketBatchSampler,
    ImageFolderDataset,
    ImageTransform,
    JsonlImageDataset,
    ProceduralImageDataset,
    collate_images,
    load_rgb,
    to_rgb,
)


def test_modes_become_rgb_with_the_right_values(tmp_path):
    gray16 = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert gray16.mode.startswith("I")
    assert np.asarray(to_rgb(gray16)).tolist() == np.full((4, 4, 3), 255).tolist()

    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 0))  # fully transparent: white shows through
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)

    palette = Image.new("P", (4, 4))
    palette.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    palette.putpixel((1, 1), 1)
    assert to_rgb(palette).getpixel((1, 1)) == (200, 100, 50)

    cmyk = Image.new("CMYK", (4, 4), (0, 0, 0, 0))  # no ink: white
    assert to_rgb(cmyk).getpixel((0, 0)) == (255, 255, 255)

    gray = Image.new("L", (4, 4), 77)
    assert to_rgb(gray).getpixel((0, 0)) == (77, 77, 77)

    path = tmp_path / "g16.png"
    gray16.save(path)
    assert load_rgb(path).mode == "RGB"


def test_fixed_mode_center_crops_and_anyres_keeps_aspect():
    image = Image.new("RGB", (300, 100))
    assert ImageTransform("fixed", size=64)(image).shape == (3, 64, 64)
    anyres = ImageTransform("anyres", max_pixels=64 * 64)
    out = anyres(image)
    h, w = out.shape[-2:]
    assert h % 16 == 0 and w % 16 == 0 and h * w <= 64 * 64
    assert w / h == pytest.approx(3, rel=0.35)
    assert float(out.min()) >= -1 and float(out.max()) <= 1
    with pytest.raises(ValueError, match="multiple of 16"):
        ImageTransform("fixed", size=100)


def test_flip_is_a_mirror_and_deterministic_per_epoch():
    dataset = ProceduralImageDataset(16, ImageTransform("fixed", size=32), [[32, 32]], hflip_probability=0.5)
    plain = ProceduralImageDataset(16, ImageTransform("fixed", size=32), [[32, 32]])
    flipped = [i for i in range(16) if not torch.equal(dataset[i]["image"], plain[i]["image"])]
    assert 0 < len(flipped) < 16
    i = flipped[0]
    assert torch.equal(dataset[i]["image"], plain[i]["image"].flip(-1))
    again = [i for i in range(16) if not torch.equal(dataset[i]["image"], plain[i]["image"])]
    assert again == flipped
    dataset.set_epoch(1)
    assert [i for i in range(16) if not torch.equal(dataset[i]["image"], plain[i]["image"])] != flipped


def _write_images(folder):
    folder.mkdir()
    Image.new("RGB", (40, 24), (255, 0, 0)).save(folder / "a.png")
    Image.new("L", (24, 40), 128).save(folder / "b.jpg")
    Image.new("RGB", (40, 24), (0, 0, 255)).save(folder / "c.png")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = folder / "noise.png"
    Image.fromarray(noise).save(data)
    (folder / "truncated.png").write_bytes(data.read_bytes()[:6000])  # header ok, pixel data cut
    data.unlink()
    (folder / "garbage.jpg").write_bytes(b"not an image at all")  # header unreadable
    (folder / "notes.txt").write_text("ignored: not an image extension")


def test_corrupt_files_are_skipped_and_counted_without_stopping(tmp_path):
    _write_images(tmp_path / "imgs")
    dataset = ImageFolderDataset(tmp_path / "imgs", ImageTransform("anyres", max_pixels=32 * 32))
    sizes = dataset.sample_sizes()
    assert len(sizes) == 5 and dataset.num_unreadable == 1  # garbage.jpg fails at the header
    loader = DataLoader(dataset, batch_sampler=BucketBatchSampler(sizes, 2, shuffle=False), collate_fn=collate_images)
    batches = list(loader)
    skipped = sum(b["num_skipped"] for b in batches)
    loaded = sorted(dataset.paths[i].name for b in batches for i in b["indices"].tolist())
    assert skipped == 1  # truncated.png fails when decoded
    assert loaded == ["a.png", "b.jpg", "c.png"]
    for b in batches:
        if b["images"] is not None:
            assert b["images"].shape[0] == len(b["indices"])


def test_collate_refuses_mixed_sizes():
    items = [{"image": torch.zeros(3, 16, 16), "index": 0}, {"image": torch.zeros(3, 16, 32), "index": 1}]
    with pytest.raises(ValueError, match="mixes image sizes"):
        collate_images(items)
    assert collate_images([None, None])["images"] is None


def test_jsonl_resolves_relative_paths_and_names_bad_lines(tmp_path):
    _write_images(tmp_path / "imgs")
    good = tmp_path / "list.jsonl"
    good.write_text(json.dumps({"image": "imgs/a.png"}) + "\n\n" + json.dumps({"image": str(tmp_path / "imgs/c.png")}) + "\n")
    dataset = JsonlImageDataset(good, ImageTransform("fixed", size=16))
    assert len(dataset) == 2 and dataset[0]["image"].shape == (3, 16, 16)

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"image": "imgs/a.png"}) + "\n" + '{"image": "imgs/b.jpg"\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        JsonlImageDataset(bad, ImageTransform())
    wrong_key = tmp_path / "wrong.jsonl"
    wrong_key.write_text(json.dumps({"path": "imgs/a.png"}) + "\n")
    with pytest.raises(ValueError, match=r"wrong\.jsonl:1.*'image'"):
        JsonlImageDataset(wrong_key, ImageTransform())


def test_missing_or_empty_sources_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder"):
        ImageFolderDataset(tmp_path / "nope", ImageTransform())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        ImageFolderDataset(tmp_path / "empty", ImageTransform())


def test_exif_rotation_is_applied_consistently_to_size_and_pixels(tmp_path):
    from illume_plus.data.datasets import read_image_size

    image = Image.new("RGB", (40, 24), (0, 128, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif.tobytes())
    assert read_image_size(path) == (40, 24)
    assert load_rgb(path).size == (24, 40)
