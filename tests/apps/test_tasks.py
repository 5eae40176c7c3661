"""`illume-plus understand | generate | edit` on a small pipeline folder: files written, answers
printed, unreadable inputs refused in one line."""

import pytest
from PIL import Image

from illume_plus.cli import main
from tests.standins import write_small_pipeline


@pytest.fixture(autouse=True)
def _quiet(recwarn):  # random-weight warnings are expected here
    yield


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(write_small_pipeline(tmp_path_factory.mktemp("model") / "small", size=(64, 64)))


def test_generate_writes_one_png_per_prompt(tmp_path, model, capsys):
    out = tmp_path / "pictures" / "circle.png"
    assert main(["generate", "a red circle", "a blue square", "--model", model, "--out", str(out), "--seed", "3",
                 "--semantic-top-k", "50", "--quiet"]) == 0
    files = sorted(p.name for p in out.parent.iterdir())
    assert files == ["circle_0.png", "circle_1.png"]
    assert Image.open(out.parent / files[0]).size == (64, 64)  # the folder's default size
    captured = capsys.readouterr()
    assert "untrained" not in captured.err  # --quiet
    assert main(["generate", "a red circle", "--model", model, "--size", "64x128", "--any-size",
                 "--out", str(tmp_path / "wide.png")]) == 0
    assert Image.open(tmp_path / "wide.png").size == (128, 64)  # PIL reports (W, H)
    assert "untrained stand-in" in capsys.readouterr().err


def test_edit_and_understand(tmp_path, model, capsys):
    source = tmp_path / "in.png"
    Image.new("P", (40, 30)).save(source)  # palette mode, odd size
    assert main(["edit", str(source), "make it blue", "--model", model, "--out", str(tmp_path / "e.png"),
                 "--quiet"]) == 0
    assert Image.open(tmp_path / "e.png").size == (40, 30)  # cropped back to the source's size
    assert main(["understand", str(source), "What is it?", "--model", model, "--max-new-tokens", "3",
                 "--quiet"]) == 0
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    capsys.readouterr()
    assert main(["understand", str(broken), "what?", "--model", model]) == 2
    err = capsys.readouterr().err
    assert "cannot read image" in err and err.count("\n") == 1
