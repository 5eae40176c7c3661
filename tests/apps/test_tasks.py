import pytest
from PIL import Image

from illume_plus.apps.tasks import main


@pytest.fixture(autouse=True)
def _quiet(recwarn):  # random-weight warnings are expected here
    yield


def test_generate_writes_one_png_per_prompt(tmp_path, capsys):
    code = main("generate", ["a red circle", "a blue square", "--config", "tiny", "--size", "64x128", "--any-size",
                             "--out", str(tmp_path)])
    assert code == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["generate_000.png", "generate_001.png"]
    assert Image.open(tmp_path / files[0]).size == (128, 64)  # PIL reports (W, H)
    assert "semantic (2, 4)" in capsys.readouterr().out  # 64x128 -> semantic grid 2x4 (floored to 28s)


def test_understand_answers_and_bad_images_fail_cleanly(tmp_path, capsys):
    image = tmp_path / "in.png"
    Image.new("P", (40, 30)).save(image)  # palette mode, odd size: converted and resized
    assert main("understand", [str(image), "-q", "What is it?", "--config", "tiny", "--max-new-tokens", "3"]) == 0
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert main("understand", [str(broken), "-q", "?", "--config", "tiny"]) == 2
    assert "cannot read image" in capsys.readouterr().err
    assert main("edit", [str(tmp_path / "missing.png"), "make it red", "--config", "tiny"]) == 2
    assert "image not found" in capsys.readouterr().err
