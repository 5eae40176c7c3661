"""The shape world's text tokenizer: a Qwen2-form byte-level BPE learned from all world text.

Its corpus is every prompt template of ILLUME+ plus the world's captions, questions, answers,
edit instructions and chat lines, so each world word is one or two tokens and prompts stay
short (short sequences are what makes MLLM training on a CPU possible). Built offline in well
under a second; the same corpus always gives the same tokenizer.
"""

from __future__ import annotations

from ..mllm.config import (EDIT_TEMPLATE, SYSTEM_PROMPT, TEXT_TO_IMAGE_TEMPLATE, TEXT_TO_IMAGE_TRAINING_TEMPLATE,
                           UNCONDITIONAL_EDIT_TEMPLATE, UNCONDITIONAL_IMAGE_TEMPLATE)
from ..mllm.text_tokenizer import build_bpe_text_tokenizer
from .text import corpus_for_tokenizer

WORLD_TEXT_VOCAB_SIZE = 640  # BPE entries (bytes + merges); ChatML specials come on top


def _prompt_lines() -> list[str]:
    templates = (TEXT_TO_IMAGE_TEMPLATE, TEXT_TO_IMAGE_TRAINING_TEMPLATE, UNCONDITIONAL_IMAGE_TEMPLATE,
                 EDIT_TEMPLATE, UNCONDITIONAL_EDIT_TEMPLATE)
    return [SYSTEM_PROMPT] + [t.replace("{resolution_tag}", "").replace("{image}", "")
                              .replace("{caption}", "").replace("{instruction}", "") for t in templates]


def world_corpus() -> list[str]:
    return _prompt_lines() * 20 + corpus_for_tokenizer()


def build_world_text_tokenizer(vocab_size: int = WORLD_TEXT_VOCAB_SIZE):
    """transformers `Qwen2Tokenizer` covering all world text (ChatML specials included)."""
    return build_bpe_text_tokenizer(world_corpus(), vocab_size)


__all__ = ["build_world_text_tokenizer", "world_corpus", "WORLD_TEXT_VOCAB_SIZE"]
