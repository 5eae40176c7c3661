"""`illume-plus tokenize | info | convert` on stand-in folders."""

import pytest
import torch
from PIL import Image

from illume_plus.cli import main
from illume_plus.pipeline_folder import KIND_PIPELINE, detect
from tests.standins import tiny_is_the_paper_tokenizer, write_official_release, write_small_pipeline


@pytest.fixture(autouse=True)
def _quiet(recwarn):
    yield


def test_tokenize_encode_decode_reconstruct(tmp_path, capsys):
    image = tmp_path / "in.png"
    Image.new("RGB", (128, 128), "orange").save(image)  # the default (shape-world) model's size
    assert main(["tokenize", "encode", str(image), "--out", str(tmp_path / "codes.pt")]) == 0
    codes = torch.load(tmp_path / "codes.pt", weights_only=True)
    assert tuple(codes["pixel_ids"].shape) == (8, 8)  # 128 / 16
    assert main(["tokenize", "decode", str(tmp_path / "codes.pt"), "--out", str(tmp_path / "dec.png")]) == 0
    assert Image.open(tmp_path / "dec.png").size == (128, 128)
    assert main(["tokenize", "reconstruct", str(image), "--out", str(tmp_path / "rec.png")]) == 0
    assert "PSNR" in capsys.readouterr().out
    assert main(["tokenize", "decode", str(image), "--out", str(tmp_path / "x.png")]) == 2
    assert "not a codes file" in capsys.readouterr().err


def test_info_describes_parts_sizes_and_presets(tmp_path, capsys):
    folder = write_small_pipeline(tmp_path / "p")
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "pipeline folder" in out and "trained=False" in out
    assert "mllm:" in out and "vision_tokenizer:" in out and "preset 'tiny'" in out
    assert "diffusion_decoder: none" in out
    assert main(["info", str(tmp_path / "nothing")]) == 2


def test_convert_the_authors_release_to_a_pipeline_folder(tmp_path, monkeypatch, capsys):
    tiny_is_the_paper_tokenizer(monkeypatch)
    paths = write_official_release(tmp_path / "checkpoints")
    assert main(["convert", str(paths["root"]), str(tmp_path / "ours")]) == 0
    out = capsys.readouterr().out
    assert "folder of release parts" in out and "diffusion_decoder:" in out
    assert detect(tmp_path / "ours") == KIND_PIPELINE
    assert main(["convert", str(paths["vision_tokenizer"]), str(tmp_path / "tok")]) == 0
    assert (tmp_path / "tok" / "model.safetensors").is_file()
    assert main(["convert", str(paths["root"]), str(tmp_path / "ours")]) == 2  # will not overwrite
    assert "not empty" in capsys.readouterr().err
