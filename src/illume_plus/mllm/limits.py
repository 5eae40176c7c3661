"""What a request must satisfy before any decoding work starts, with errors that name the numbers.

A request that breaks one of these does not fail inside the model: it silently gives a wrong
result (a NaN guidance scale turns every CFG logit into NaN and the sampler returns code 0
everywhere) or runs for minutes past the model's context (positions beyond
`max_position_embeddings` were never trained). So the Pipeline checks every request here, and
`GenerationRequest` checks its own fields when it is built.
"""

from __future__ import annotations

import math
from typing import Callable

# No tokenizer packs more than this many characters into one token on average, so a text
# longer than context * MAX_CHARS_PER_TOKEN cannot fit; it is refused before it is tokenised.
MAX_CHARS_PER_TOKEN = 64


def check_guidance_scale(guidance_scale) -> float:
    try:
        value = float(guidance_scale)
    except (TypeError, ValueError):
        raise ValueError(f"guidance_scale must be a number, got {guidance_scale!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"guidance_scale must be finite, got {guidance_scale}")
    return value


def check_image_size(size, what: str = "an image size") -> tuple[int, int]:
    """(H, W) as two positive ints."""
    try:
        h, w = size
        if int(h) != h or int(w) != w:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be two ints (H, W), got {size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"{what} must be positive, got {int(h)}x{int(w)}")
    return int(h), int(w)


def check_text_length(text: str, context_length: int, what: str = "prompt") -> None:
    """Refuse, before tokenising, a text that cannot fit `context_length` tokens."""
    if not isinstance(text, str):
        raise TypeError(f"the {what} must be a string, got {type(text).__name__}")
    limit = context_length * MAX_CHARS_PER_TOKEN
    if len(text) > limit:
        raise ValueError(f"the {what} has {len(text):,} characters; the model's context of {context_length:,} "
                         f"tokens cannot hold more than about {limit:,}")


def tokens_needed(request, frame_tokens: Callable[[int, int], int]) -> int:
    """Context a request fills: its prompt plus what it writes (the image frame and its closing
    token, or up to `max_new_tokens` of text). CFG rows are as long as the conditional one at most."""
    prompts = [request.prompt] + ([request.unconditional_prompt] if request.unconditional_prompt is not None else [])
    prompt_length = max(len(p) for p in prompts)
    if request.image_size is not None:
        return prompt_length + frame_tokens(*request.image_size) + 1
    return prompt_length + request.max_new_tokens


def check_fits_context(request, context_length: int, frame_tokens: Callable[[int, int], int]) -> None:
    needed = tokens_needed(request, frame_tokens)
    if needed <= context_length:
        return
    prompt_length = len(request.prompt)
    if request.image_size is not None:
        h, w = request.image_size
        wants = f"a {h}x{w} image needs {frame_tokens(h, w) + 1:,} tokens"
    else:
        wants = f"max_new_tokens is {request.max_new_tokens:,}"
    raise ValueError(f"the request does not fit the model's context: the prompt is {prompt_length:,} tokens and "
                     f"{wants}, {needed:,} in all, over the context length of {context_length:,}")
