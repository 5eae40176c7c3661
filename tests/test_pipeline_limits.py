"""Requests that would silently give a wrong result, or run far past the model's context, are
refused with a one-line error before any decoding work (tiny preset, random weights)."""

import math

import pytest
import torch
from PIL import Image

from illume_plus import Pipeline
from illume_plus.mllm.config import IllumePlusConfig
from illume_plus.mllm.engine import GenerationRequest
from illume_plus.mllm.model import IllumePlus
from illume_plus.mllm.processor import IllumePlusProcessor
from illume_plus.mllm.text_tokenizer import build_tiny_text_tokenizer
from illume_plus.tokenizer.model import DualViTok


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    config = IllumePlusConfig.from_name("tiny")
    processor = IllumePlusProcessor.from_text_tokenizer(build_tiny_text_tokenizer(), config)
    pipe = Pipeline(IllumePlus(config).eval(), vision_tokenizer=DualViTok(config.tokenizer).eval(), processor=processor)

    def no_work(*_, **__):
        raise AssertionError("the engine ran for a request that should have been refused")

    pipe.engine.generate = pipe.engine.stream = no_work
    return pipe


IMAGE = Image.new("RGB", (64, 64), (120, 30, 200))


@pytest.mark.parametrize("scale", [math.nan, math.inf, -math.inf])
def test_guidance_scale_must_be_finite(pipe, scale):
    with pytest.raises(ValueError, match="guidance_scale must be finite"):
        pipe.generate("a cat", size=(64, 64), any_size=True, guidance_scale=scale)
    with pytest.raises(ValueError, match="guidance_scale must be finite"):
        pipe.edit(IMAGE, "make it red", guidance_scale=scale)
    with pytest.raises(ValueError, match="guidance_scale must be finite"):
        pipe.chat().generate("a cat", size=(64, 64), any_size=True, guidance_scale=scale)
    with pytest.raises(ValueError, match="guidance_scale must be finite"):
        GenerationRequest(prompt=None, image_size=(64, 64), guidance_scale=scale)


def test_pixel_tensors_must_be_finite(pipe):
    nan_image = torch.zeros(3, 64, 64)
    nan_image[0, 5, 5] = float("nan")  # one NaN: min/max range checks do not see it
    with pytest.raises(ValueError, match="NaN"):
        pipe.understand(nan_image, "what is this?")
    with pytest.raises(ValueError, match="NaN"):
        pipe.edit(nan_image, "make it red")
    with pytest.raises(ValueError, match="positive height and width"):
        pipe.understand(torch.zeros(3, 0, 64), "what is this?")


@pytest.mark.parametrize("size", [(0, 0), (-64, 64), (64, 0)])
def test_sizes_must_be_positive(pipe, size):
    for any_size in (False, True):
        with pytest.raises(ValueError, match="positive"):
            pipe.generate("a cat", size=size, any_size=any_size)


def test_prompt_and_new_tokens_must_fit_the_context(pipe):
    context = pipe.config.max_position_embeddings  # 8,192 for the tiny preset
    with pytest.raises(ValueError, match=rf"max_new_tokens is 10,000.*over the context length of {context:,}"):
        pipe.understand(IMAGE, "what is this?", max_new_tokens=10_000)
    long_prompt = "a cat sitting on a mat " * 2_000  # 46,000 characters, tens of thousands of tokens
    with pytest.raises(ValueError, match=rf"the prompt is [\d,]+ tokens.*over the context length of {context:,}"):
        pipe.generate(long_prompt, size=(64, 64), any_size=True)
    with pytest.raises(ValueError, match="over the context length"):
        pipe.chat().send(long_prompt)


def test_absurd_prompts_are_refused_before_tokenising(pipe, monkeypatch):
    def no_tokenising(*_, **__):
        raise AssertionError("tokenised a prompt that cannot fit")

    monkeypatch.setattr(pipe.processor, "encode_text_to_image", no_tokenising)
    monkeypatch.setattr(pipe.processor, "encode_understanding", no_tokenising)
    huge = "x" * (pipe.config.max_position_embeddings * 64 + 1)
    with pytest.raises(ValueError, match=r"the prompt has [\d,]+ characters"):
        pipe.generate(huge, size=(64, 64), any_size=True)
    with pytest.raises(ValueError, match=r"the question has [\d,]+ characters"):
        pipe.understand(IMAGE, huge)
