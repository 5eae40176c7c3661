"""The web demo's gradio app (optional `demo` extra): skipped where gradio is not installed.
The browser test (test_browser.py) and the soak test drive it over HTTP."""

import importlib
import subprocess
import sys

import pytest


def test_the_package_imports_without_gradio():
    code = ("import sys; sys.modules['gradio'] = None; import illume_plus, illume_plus.cli, "
            "illume_plus.apps.conversation, illume_plus.apps.web; from illume_plus.cli import main; "
            "sys.exit(main(['demo', '--model', 'x']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0 and "needs gradio" in done.stderr and "Traceback" not in done.stderr


def test_app_has_one_conversation_endpoint_and_the_size_choices():
    pytest.importorskip("gradio")
    from illume_plus.apps.web import build_app, size_choices
    from illume_plus.pipeline_folder import load_pipeline, random_pipeline

    choices = size_choices(random_pipeline("tiny"))  # the paper's 11 generation sizes
    assert choices[0].startswith("model default") and "512x512" in choices and len(choices) == 12
    pipe = load_pipeline(device="cpu")  # the shape-world model knows one size
    assert size_choices(pipe) == ["model default (128x128)", "128x128"]
    app = build_app(pipe)
    names = {d.get("api_name") for d in app.config["dependencies"]}
    assert "respond" in names and not {"generate", "edit", "understand"} & names
    importlib.import_module("gradio")
