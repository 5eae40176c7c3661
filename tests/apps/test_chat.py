"""`illume-plus chat`: images by path, generated images saved and edited in later turns."""

import pytest
from PIL import Image

from illume_plus.apps.chat import TerminalChat
from illume_plus.pipeline_folder import load_pipeline
from tests.standins import write_small_pipeline


@pytest.fixture(autouse=True)
def _quiet(recwarn):
    yield


def test_a_terminal_chat_attaches_makes_and_edits_images(tmp_path, monkeypatch):
    pipe = load_pipeline(write_small_pipeline(tmp_path / "model", size=(64, 64)), device="cpu")
    lines = []
    chat = TerminalChat(pipe, tmp_path / "out", max_new_tokens=3, progress=False,
                        write=lambda text="", **kw: lines.append(str(text)))
    photo = tmp_path / "photo.png"
    Image.new("RGB", (80, 60), "green").save(photo)
    monkeypatch.chdir(tmp_path)

    assert chat.handle("what is in photo.png?")
    assert chat.current is not None and chat.session.messages[-1]["role"] == "assistant"
    assert chat.handle("draw an image of a red circle")
    assert (tmp_path / "out" / "image_01.png").is_file() and chat.current is chat.session.images[-1]
    assert chat.handle("make it blue")  # edits the image just made
    assert (tmp_path / "out" / "image_02.png").is_file() and len(chat.session.images) == 2
    assert chat.handle("/use 1") and chat.current is chat.session.images[0]
    assert chat.handle("/images") and "out/image_02.png" in lines[-1]
    assert chat.handle("what about missing.png?")  # a path that is not a file is just text
    assert chat.handle("/edit")  # a bare command: an error line, the chat goes on
    assert lines[-1].startswith("error: /edit needs")
    assert not chat.handle("/quit")
