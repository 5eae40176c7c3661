"""Images in and out of the MLLM, against the authors' steps written out with PIL here."""

import numpy as np
import pytest
import torch
from PIL import Image

from illume_plus.mllm.config import GENERATION_SIZES
from illume_plus.mllm.images import nearest_anchor

WHITE = 255


def photo(width, height, seed=0):
    """A smooth RGB picture with some texture (PIL, W x H)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, (x + y) / (width + height)], -1) * 200
    return Image.fromarray((base + rng.uniform(0, 40, base.shape)).astype(np.uint8))


def as_uint8(tensor):
    return ((tensor + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("hw, expected", [
    # |w/h - anchor w/h| decides, not the log ratio: 870/500 = 1.74 is nearer 1.5 than 2 ...
    ((500, 870), (384, 576)),
    # ... and 580/1000 = 0.58 nearer 0.5 than 2/3 (a log ratio picks the other one in both)
    ((1000, 580), (768, 384)),
    ((300, 900), (320, 960)), ((1000, 1000), (512, 512)), ((2000, 500), (1024, 256)),
])
def test_anchor_is_the_nearest_aspect_ratio(hw, expected):
    assert nearest_anchor(*hw, GENERATION_SIZES) == expected


def test_anchor_ties_go_to_the_nearest_size():
    anchors = ((512, 512), (256, 256), (384, 384))
    assert nearest_anchor(300, 300, anchors) == (256, 256)
    assert nearest_anchor(400, 400, anchors) == (384, 384)
    assert nearest_anchor(900, 900, anchors) == (512, 512)


def test_edit_source_is_lanczos_fitted_and_padded_white(tiny_processor):
    source = photo(500, 300)  # w/h 1.67 -> the 384x576 anchor
    seq = tiny_processor.encode_edit(source, "make it blue")
    assert seq.target_size == (384, 576)
    prepared = as_uint8(seq.images[0].pixel_values)
    # theirs: ratio = min(576/500, 384/300) = 1.152 -> 576 x int(345.6) = 345 rows, LANCZOS,
    # padded with (384 - 345) // 2 = 19 white rows above and 20 below
    expected = np.full((384, 576, 3), WHITE, dtype=np.uint8)
    expected[19:19 + 345] = np.asarray(source.resize((576, 345), Image.LANCZOS))
    assert np.array_equal(prepared, expected)


@pytest.mark.parametrize("scale", [1, 2])  # the diffusion decoder returns 2x the token size
def test_edit_result_is_unpadded_and_resized_back(tiny_processor, scale):
    source = photo(500, 300)
    info = tiny_processor.encode_edit(source, "x").source_resize
    padded = Image.new("RGB", (576 * scale, 384 * scale), (WHITE,) * 3)
    content = source.resize((576 * scale, int(300 * 1.152 * scale)), Image.LANCZOS)
    top = (384 * scale - content.height) // 2
    padded.paste(content, (0, top))
    restored = tiny_processor.postprocess(padded, info)
    assert restored.size == source.size
    # theirs: crop the box recomputed from the output size, LANCZOS back to the source size
    expected = padded.crop((0, top, 576 * scale, top + content.height)).resize(source.size, Image.LANCZOS)
    assert np.array_equal(np.asarray(restored), np.asarray(expected))
    assert np.abs(np.asarray(restored, dtype=float) - np.asarray(source, dtype=float)).mean() < 6


def test_training_samples_keep_the_centre_crop(tiny_processor):
    from illume_plus.mllm.processor import ImageCodes

    source = photo(500, 300)
    spec = tiny_processor.frame_spec(384, 576)
    codes = ImageCodes(torch.zeros(spec.semantic_grid, dtype=torch.long), torch.zeros(spec.pixel_grid, dtype=torch.long),
                       384, 576)
    seq = tiny_processor.encode_edit(source, "x", codes=codes)
    # their center_crop_and_resize: scale to height 384 -> int(384/300*500) = 640 wide, crop 32 | 576 | 32
    expected = np.asarray(source.resize((640, 384), Image.LANCZOS))[:, 32:32 + 576]
    assert seq.source_resize.fit == "crop"
    assert np.array_equal(as_uint8(seq.images[0].pixel_values), expected)


def test_understanding_images_are_resized_by_pil_bicubic_on_uint8(tiny_processor):
    from illume_plus.tokenizer.preprocess import image_to_tensor

    source = photo(1000, 700)
    x = tiny_processor.prepare_understanding_image(source)
    h, w = x.shape[-2:]
    expected = np.asarray(source.resize((w, h), Image.BICUBIC))
    assert np.array_equal(as_uint8(x), expected)
    # one path: DualViTok's own preprocessing gives the same tensor for the same bounds
    cfg = tiny_processor.config
    assert torch.equal(x, image_to_tensor(source, cfg.image_size_factor, cfg.understanding_min_pixels,
                                          cfg.understanding_max_pixels))
    # a tensor of an accepted size is used as it is; one that needs resampling takes the same path
    t = torch.rand(3, 64, 96) * 2 - 1
    assert torch.equal(tiny_processor.prepare_understanding_image(t), t)
    odd = torch.from_numpy(np.asarray(photo(100, 70))).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(tiny_processor.prepare_understanding_image(odd),
                       tiny_processor.prepare_understanding_image(photo(100, 70)))


def test_edit_anchor_follows_the_upright_photo(tiny_processor):
    import io

    stored = photo(300, 500)  # stored portrait, EXIF says: rotate 90° (orientation 6) -> landscape
    exif = stored.getexif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", exif=exif)
    buffer.seek(0)
    seq = tiny_processor.encode_edit(Image.open(buffer), "x")
    assert seq.source_resize.original_size == (300, 500)  # (H, W) upright
    assert seq.target_size == (384, 576)
