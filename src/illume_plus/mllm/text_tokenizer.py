"""A small Qwen2-style text tokenizer built offline, for the "tiny" model and the tests.

The real model uses Qwen2.5's tokenizer (loaded from a local folder). For tests we need the same
kind of object without downloading anything: a byte-level BPE trained on a few built-in
sentences, wrapped in transformers' `Qwen2Tokenizer` (same pre-tokenizer, same ChatML special
tokens), so every code path that serves the real tokenizer serves this one. Training is
deterministic and takes milliseconds.
"""

from __future__ import annotations

import json

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from .vocab import CHAT_END, CHAT_START

END_OF_TEXT = "<|endoftext|>"

# Text the tiny BPE learns its merges from: the prompts ILLUME+ uses, and a little chat.
_CORPUS = (
    "You are a helpful assistant.",
    "Generate an image of a red circle, the content of the image is a red circle on a white background.",
    "Generate a random image of the size given.",
    "Please edit the image according to the instruction: make the sky blue.",
    "Reconstruct the image according to the given image.",
    "What is in the picture? A cat sitting on a mat next to a dog.",
    "Describe the image in detail. There are two people walking in the park.",
    "The quick brown fox jumps over the lazy dog. 0123456789",
)


def build_tiny_text_tokenizer(vocab_size: int = 512, total_size: int | None = None):
    """A Qwen2-style byte-level BPE tokenizer with ChatML specials (`<|endoftext|>` is eos and pad,
    as in Qwen2.5's base tokenizer; `<|im_start|>`, `<|im_end|>` are special tokens).

    `total_size` pads the BPE vocabulary with unreachable placeholder entries so that
    len(tokenizer) equals it: a cheap stand-in for a large tokenizer's id arithmetic (e.g.
    Qwen2.5's 151,665 entries)."""
    return build_bpe_text_tokenizer(list(_CORPUS) * 4, vocab_size, total_size)


def build_bpe_text_tokenizer(corpus: list[str], vocab_size: int, total_size: int | None = None):
    """`build_tiny_text_tokenizer` on any corpus: BPE merges learned from `corpus` (deterministic)."""
    from transformers import Qwen2Tokenizer  # lazy: transformers is heavy

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator(corpus, trainer)
    learned = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in learned["merges"]]
    vocab = dict(learned["vocab"])
    specials = (END_OF_TEXT, CHAT_START, CHAT_END)
    if total_size is not None:
        fill = total_size - len(vocab) - len(specials)
        if fill < 0:
            raise ValueError(f"total_size {total_size} is below the tiny tokenizer's own {len(vocab) + len(specials)}")
        base = len(vocab)
        vocab.update({f"<placeholder_{i}>": base + i for i in range(fill)})  # no merge ever yields these

    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=END_OF_TEXT,
                               eos_token=END_OF_TEXT, pad_token=END_OF_TEXT)
    tokenizer.add_special_tokens({"additional_special_tokens": [CHAT_START, CHAT_END]})
    return tokenizer


__all__ = ["build_tiny_text_tokenizer", "build_bpe_text_tokenizer", "END_OF_TEXT"]
