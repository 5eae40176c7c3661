"""Every ```python block of README.md and docs/*.md runs.

A file's blocks run in order in one namespace (like a notebook), in a scratch folder laid out
as a user's machine: `checkpoints/` holds tiny stand-ins of the authors' release in their
format (illume_plus-qwen2_5-3b/, dualvitok/pytorch_model.bin, dualvitok_sdxl_decoder/; the
"illume-plus" DualViTok preset is the tiny one here), and cat.png, photo.png, fox.png exist.
So that the examples run in seconds on a CPU, three shims apply: every image size is shrunk to
about 64 pixels on its short side (aspect ratio kept), text replies stop after 16 tokens, and
the diffusion decoder takes 2 steps.
A block preceded by `<!-- not executed: REASON -->` is skipped with that reason.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!--\s*not executed:\s*(?P<skip>.*?)\s*-->\s*\n)?```python\n(?P<code>.*?)```", re.S)


def python_blocks(path: Path) -> list[tuple[int, str, str | None]]:
    text = path.read_text()
    return [(text[: m.start("code")].count("\n") + 1, m.group("code"), m.group("skip")) for m in BLOCK.finditer(text)]


def _shrink(size):
    h, w = (int(v) for v in size)
    scale = 64 / min(h, w)
    return max(64, round(h * scale / 64) * 64), max(64, round(w * scale / 64) * 64)


@pytest.fixture
def user_machine(tmp_path, monkeypatch, recwarn):
    from illume_plus.data.procedural import render_procedural_image
    from illume_plus.diffusion.pipeline import DiffusionDecoderPipeline
    from illume_plus.mllm.processor import IllumePlusProcessor
    from illume_plus.pipeline import Pipeline
    from tests.standins import tiny_is_the_paper_tokenizer, write_official_release

    tiny_is_the_paper_tokenizer(monkeypatch)
    write_official_release(tmp_path / "checkpoints")
    for seed, name in enumerate(("cat.png", "photo.png", "fox.png")):
        render_procedural_image(seed, 96, 128).save(tmp_path / name)

    check_size, nearest, iter_text = (Pipeline._check_size, IllumePlusProcessor.nearest_generation_size,
                                      Pipeline._iter_text)
    monkeypatch.setattr(Pipeline, "_check_size", lambda self, size, any_size: _shrink(check_size(self, size, any_size)))
    monkeypatch.setattr(IllumePlusProcessor, "nearest_generation_size", lambda self, h, w: _shrink(nearest(self, h, w)))
    monkeypatch.setattr(Pipeline, "_iter_text", lambda self, prompt, max_new_tokens, seed, settings:
                        iter_text(self, prompt, min(max_new_tokens, 16), seed, settings))
    decode = DiffusionDecoderPipeline.__call__
    monkeypatch.setattr(DiffusionDecoderPipeline, "__call__", lambda self, *args, **kwargs:
                        decode(self, *args, **{**kwargs, "num_inference_steps": 2}))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_docs_have_python_examples():
    assert sum(len(python_blocks(path)) for path in DOC_FILES) >= 5


@pytest.mark.parametrize("path", DOC_FILES, ids=[p.name for p in DOC_FILES])
def test_python_examples_run(path, user_machine):
    blocks = python_blocks(path)
    if not blocks:
        pytest.skip(f"{path.name} has no python examples")
    namespace = {"__name__": "__docs__"}
    for line, code, skip in blocks:
        if skip:
            continue
        try:
            exec(compile(code, f"{path.name}:{line}", "exec"), namespace)
        except Exception as e:  # name the block in the failure
            raise AssertionError(f"the example at {path.name} line {line} fails: {type(e).__name__}: {e}") from e
