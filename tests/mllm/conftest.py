"""Shared fixtures for the MLLM tests: the tiny config, its extended text tokenizer, the processor."""

import json
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="session")
def layout_fixture() -> dict:
    """The authors' vocabulary extension and image sequences (tests/data/mllm_layout.json)."""
    return json.loads((DATA / "mllm_layout.json").read_text())


@pytest.fixture(scope="session")
def tiny_config():
    from illume_plus.mllm.config import IllumePlusConfig

    return IllumePlusConfig.from_name("tiny")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_config):
    """The tiny text tokenizer extended with the tiny image vocabulary (256 / 512 codes)."""
    from illume_plus.mllm.text_tokenizer import build_tiny_text_tokenizer
    from illume_plus.mllm.vocab import extend_tokenizer

    tok = build_tiny_text_tokenizer()
    extend_tokenizer(tok, tiny_config.semantic_codebook_size, tiny_config.pixel_codebook_size)
    return tok


@pytest.fixture(scope="session")
def tiny_layout(tiny_tokenizer, tiny_config):
    from illume_plus.mllm.vocab import TokenLayout

    return TokenLayout.from_tokenizer(tiny_tokenizer, tiny_config.semantic_codebook_size,
                                      tiny_config.pixel_codebook_size)


QWEN25_TEXT_TOKENS = 151665  # len(Qwen2.5 tokenizer) (SPEC §3; fixture "qwen25.len_tokenizer")


@pytest.fixture(scope="session")
def qwen_like_tokenizer():
    """A stand-in with Qwen2.5's length (tiny BPE padded with placeholders to 151,665 entries),
    extended with the full-size image vocabulary (32,768 / 98,304 codes)."""
    from illume_plus.mllm.text_tokenizer import build_tiny_text_tokenizer
    from illume_plus.mllm.vocab import extend_tokenizer

    tok = build_tiny_text_tokenizer(total_size=QWEN25_TEXT_TOKENS)
    assert len(tok) == QWEN25_TEXT_TOKENS
    extend_tokenizer(tok, 32768, 98304)
    return tok


@pytest.fixture(scope="session")
def tiny_processor(tiny_tokenizer, tiny_config):
    from illume_plus.mllm.processor import IllumePlusProcessor

    return IllumePlusProcessor(tiny_tokenizer, tiny_config)


@pytest.fixture(scope="session")
def tiny_model(tiny_config):
    """A random tiny IllumePlus in eval mode (session-wide: tests must not modify it)."""
    import torch

    from illume_plus.mllm.model import IllumePlus

    torch.manual_seed(0)
    return IllumePlus(tiny_config).eval()
