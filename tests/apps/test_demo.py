import json

from PIL import Image

from illume_plus.apps.demo import main


def test_demo_runs_every_part_and_writes_its_outputs(tmp_path, recwarn):
    code = main(["--out", str(tmp_path), "--image-size", "64x96", "--gen-size", "64x64", "--any-size",
                 "--diffusion-steps", "1"])
    assert code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["tokenizer"]["pixel_grid"] == [4, 6]  # 64x96 / 16
    assert summary["generate"]["pixel_grid"] == [4, 4]
    assert Image.open(tmp_path / "generate.png").size == (64, 64)
    assert Image.open(tmp_path / "generate_diffusion_2x.png").size == (128, 128)  # 2x the token resolution
    for name in ("input.png", "tokenizer_reconstruction.png", "edit.png"):
        assert (tmp_path / name).is_file()
    assert not [w for w in recwarn if "no processor given" in str(w.message)]
