"""The web demo (optional `demo` extra): skipped where gradio is not installed."""

import pytest

gr = pytest.importorskip("gradio")

from illume_plus.apps.web import build_app  # noqa: E402


class RecordingPipeline:
    def __init__(self):
        self.calls = []

    def understand(self, image, question):
        self.calls.append(("understand", question))
        return "a square"


def _endpoint(app, name):
    for index, dependency in enumerate(app.config["dependencies"]):
        if dependency.get("api_name") == name:
            return app.fns[index].fn
    raise AssertionError(f"no endpoint {name!r}")


def test_app_exposes_the_three_tasks():
    app = build_app(RecordingPipeline())
    names = {d.get("api_name") for d in app.config["dependencies"]}
    assert {"generate", "edit", "understand"} <= names


def test_handlers_reject_empty_input_and_forward_valid_input():
    from PIL import Image

    pipe = RecordingPipeline()
    app = build_app(pipe)
    with pytest.raises(gr.Error, match="prompt is empty"):
        _endpoint(app, "generate")("   ", "512x512", 2.0, 0)
    with pytest.raises(gr.Error, match="needed"):
        _endpoint(app, "understand")(None, "what?")
    assert _endpoint(app, "understand")(Image.new("L", (32, 32)), "what?") == "a square"
    assert pipe.calls == [("understand", "what?")]
