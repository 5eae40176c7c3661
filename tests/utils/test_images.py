"""The package's one image loader: every odd file comes out as upright 8-bit RGB or fails in one line."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import illume_plus
from illume_plus.utils.images import ImageLoadError, load_image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def rgb16_png(values: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (PIL cannot write one), written by hand."""
    height, width, _ = values.shape
    raw = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_sixteen_bit_grey_is_scaled_not_saturated(tmp_path):
    grey = Image.fromarray(np.full((4, 6), 32768, dtype=np.uint16))  # mid grey in 16 bits
    path = tmp_path / "g16.png"
    grey.save(path)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (6, 4)
    assert np.asarray(out).max() == 128 and np.asarray(out).min() == 128


def test_sixteen_bit_rgb_is_scaled():
    values = np.zeros((2, 3, 3), dtype=np.uint16)
    values[..., 0], values[..., 1], values[..., 2] = 65535, 32896, 0
    out = np.asarray(load_image(rgb16_png(values)))
    assert out[0, 0].tolist() == [255, 128, 0]


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 0))  # fully transparent dark pixels
    rgba.putpixel((0, 0), (10, 20, 30, 255))
    out = load_image(png_bytes(rgba))
    assert out.getpixel((1, 1)) == (255, 255, 255) and out.getpixel((0, 0)) == (10, 20, 30)
    la = Image.new("LA", (2, 2), (0, 0))
    assert load_image(png_bytes(la)).getpixel((0, 0)) == (255, 255, 255)
    palette = Image.new("P", (2, 2), 0)
    palette.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    palette.info["transparency"] = 0
    palette.putpixel((1, 1), 1)
    out = load_image(png_bytes(palette))
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((1, 1)) == (200, 100, 50)


def test_cmyk_and_exif_orientation(tmp_path):
    cmyk = Image.new("CMYK", (3, 2), (0, 0, 0, 0))
    path = tmp_path / "c.jpg"
    cmyk.save(path, quality=100)
    assert load_image(path).getpixel((0, 0))[0] > 250  # no ink: white
    wide = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees on display
    rotated = tmp_path / "r.jpg"
    wide.save(rotated, exif=exif.tobytes())
    assert load_image(rotated).size == (20, 40)


def test_unreadable_truncated_and_bomb_files_fail_in_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ImageLoadError, match="notes.png"):
        load_image(text)
    data = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="cut.png") as info:
        load_image(truncated)
    assert "\n" not in str(info.value)
    big = tmp_path / "bomb.png"
    Image.new("L", (300, 300)).save(big)
    with pytest.raises(ImageLoadError, match=r"300x300 = 90,000 pixels.*limit of 10,000"):
        load_image(big, max_image_pixels=10_000)


def test_max_side_downscales_and_keeps_the_aspect_ratio(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (1600, 800), (0, 120, 0)).save(path)
    out = load_image(path, max_side=400)
    assert out.size == (400, 200)
    assert load_image(Image.new("RGB", (30, 10)), max_side=400).size == (30, 10)


def test_pil_images_and_the_package_level_name():
    assert illume_plus.load_image is load_image
    assert load_image(Image.new("L", (5, 3), 77)).getpixel((0, 0)) == (77, 77, 77)
    with pytest.raises(TypeError, match="int"):
        load_image(3)
