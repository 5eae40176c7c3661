import json

import numpy as np
import pytest
import torch
from PIL import Image

from illume_plus import DualViTok, DualViTokConfig
from illume_plus.data import write_procedural_images
from illume_plus.evaluation.tokenizer import main

EXPECTED_KEYS = {"psnr", "ssim", "semantic_codebook_usage", "pixel_codebook_usage", "num_images", "num_skipped"}


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval_images")
    write_procedural_images(folder, 3, seed=50, sizes=[(32, 32)])
    Image.new("LA", (40, 20), (90, 255)).save(folder / "gray_alpha.png")  # another mode, another size
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    return folder


def test_cli_writes_json_with_the_metrics(image_dir, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert main(["--data", str(image_dir), "--config", "tiny", "--max-pixels", str(32 * 32),
                 "--json", str(out), "--batch-size", "2"]) == 0
    results = json.loads(out.read_text())
    assert EXPECTED_KEYS <= set(results) and "rfid" not in results  # no Inception weights given
    assert results["num_images"] == 4 and results["num_skipped"] == 1
    assert 0 < results["pixel_codebook_usage"] <= 1 and 0 < results["semantic_codebook_usage"] <= 1
    assert "PSNR" in capsys.readouterr().out


def test_psnr_matches_a_hand_computation_on_decoded_indices(tmp_path):
    image_dir = tmp_path / "images"
    write_procedural_images(image_dir, 3, seed=50, sizes=[(32, 32)])
    out = tmp_path / "metrics.json"
    main(["--data", str(image_dir), "--config", "tiny", "--seed", "3", "--size", "32", "--limit", "2",
          "--json", str(out)])
    results = json.loads(out.read_text())
    assert results["num_images"] == 2

    torch.manual_seed(3)
    tokenizer = DualViTok(DualViTokConfig.from_name("tiny")).eval()
    psnrs, used = [], set()
    for path in sorted(image_dir.glob("*.png"))[:2]:
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0  # already 32x32
        images = torch.from_numpy(pixels * 2 - 1).permute(2, 0, 1)[None].float()
        with torch.no_grad():
            encoding = tokenizer.encode(images)
            decoded = tokenizer.decode(encoding.semantic_ids, encoding.pixel_ids)
        recon = ((decoded[0].permute(1, 2, 0).double().numpy() + 1) / 2).clip(0, 1)
        psnrs.append(10 * np.log10(1.0 / np.mean((recon - pixels) ** 2)))
        used.update(encoding.pixel_ids.flatten().tolist())
    assert results["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-3)
    assert results["pixel_codes_used"] == len(used)


def test_bad_arguments_are_refused(image_dir, tmp_path):
    with pytest.raises(SystemExit):  # --model and --config are exclusive
        main(["--data", str(image_dir), "--config", "tiny", "--model", "x", "--json", str(tmp_path / "o.json")])
    with pytest.raises(FileNotFoundError):
        main(["--data", str(tmp_path / "missing"), "--config", "tiny", "--json", str(tmp_path / "o.json")])


def test_default_batch_keeps_a_batch_near_one_512_image_of_pixels():
    from illume_plus.evaluation.tokenizer import build_parser, default_batch_size

    assert default_batch_size(512 * 512) == 1
    assert default_batch_size(256 * 256) == 4  # 16 x 256² peaked at 6 GB; 4 x 256² at 1.85 GB
    assert default_batch_size(2048 * 2048) == 1
    assert default_batch_size(16 * 16) == 64  # capped
    args = build_parser().parse_args(["--data", "d", "--config", "tiny", "--json", "o.json"])
    assert args.batch_size is None and args.batch_pixels == 512 * 512
