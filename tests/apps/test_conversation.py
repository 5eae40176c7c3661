"""The web demo's conversation logic (no gradio): the current image, task routing, bad uploads."""

import numpy as np
import pytest
from PIL import Image

from illume_plus.apps.conversation import MAX_UPLOAD_SIDE, Conversation, Settings
from illume_plus.pipeline import ImageResult


class FakePipeline:
    """Records calls; returns images of a fixed colour (the real pipeline is tested elsewhere)."""

    decoder = "pixel"

    def __init__(self):
        self.calls = []

    def default_size(self):
        return (64, 64), True

    def generate(self, prompt, **kw):
        self.calls.append(("generate", prompt, kw))
        return ImageResult(None, None, (64, 64), Image.new("RGB", (64, 64), "red"))

    def edit(self, image, instruction, **kw):
        self.calls.append(("edit", image, instruction, kw))
        return ImageResult(None, None, (64, 64), Image.new("RGB", (64, 64), "blue"))

    def understand(self, image, question, **kw):
        self.calls.append(("understand", image, question, kw))
        return " a shape "


def test_generate_then_edit_the_image_just_made_then_ask_about_it():
    pipe = FakePipeline()
    convo = Conversation(pipe)
    [made] = convo.respond("draw an image of a red circle", settings=Settings(seed=4, sampling={"temperature": 0.5}))
    assert made.image.getpixel((0, 0)) == (255, 0, 0)
    assert pipe.calls[0][:2] == ("generate", "a red circle") and pipe.calls[0][2]["seed"] == 4
    [edited] = convo.respond("make it blue")
    assert pipe.calls[1][0] == "edit" and pipe.calls[1][1] is made.image  # the image just made
    [answer] = convo.respond("What colour is it?")
    assert answer.text == "a shape" and pipe.calls[2][1] is edited.image


def test_uploads_are_downscaled_at_once_and_bad_ones_explained(tmp_path):
    pipe = FakePipeline()
    convo = Conversation(pipe)
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((3000, 2000, 3), np.uint8)).save(big)
    [reply] = convo.respond("What is this?", upload=str(big))
    assert max(pipe.calls[-1][1].size) == MAX_UPLOAD_SIDE
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    [reply] = convo.respond("What is this?", upload=str(fake))
    assert reply.error and "Could not use the upload" in reply.text and "cannot read image" in reply.text
    bomb = tmp_path / "bomb.png"
    Image.new("1", (10_000, 10_000)).save(bomb)
    with pytest.warns(Image.DecompressionBombWarning):
        [reply] = convo.respond("and this?", upload=str(bomb))
    assert reply.error and "decompression bomb" in reply.text
    [reply] = convo.respond("   ")
    assert reply.error and "Type a message" in reply.text
