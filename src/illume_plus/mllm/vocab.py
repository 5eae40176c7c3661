"""The image vocabulary added to the LLM's tokenizer, and the id layout derived from it.

ILLUME+ extends a Qwen2 tokenizer with 131,111 ordinary tokens (SPEC §3), in this order:
7 structural tokens, 16 height tags, 16 width tags, the semantic codes (level 0) and the pixel
codes (level 1). `extend_tokenizer` adds them exactly as the authors' script does (plain
`add_tokens`, not special), so their ids are `len(base tokenizer) + position`. `TokenLayout`
reads every id back from a tokenizer; no id is ever written down in this package.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

STRUCTURAL_TOKENS = (
    "<start_of_image>",
    "<end_of_image>",
    "<end_of_line>",
    "<start_of_level0>",
    "<end_of_level0>",
    "<start_of_level1>",
    "<end_of_level1>",
)
RESOLUTION_TAG_STEP = 64  # height/width tags exist for multiples of 64 ...
RESOLUTION_TAG_MAX = 1024  # ... up to 1024
CHAT_START, CHAT_END = "<|im_start|>", "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"


def resolution_tag_sizes() -> list[int]:
    return list(range(RESOLUTION_TAG_STEP, RESOLUTION_TAG_MAX + 1, RESOLUTION_TAG_STEP))


def semantic_code_token(k: int) -> str:
    return f"<|image_level0_{k}|>"


def pixel_code_token(k: int) -> str:
    return f"<|image_level1_{k}|>"


def added_token_strings(semantic_codebook_size: int, pixel_codebook_size: int) -> list[str]:
    """The tokens ILLUME+ adds to the text tokenizer, in the authors' order."""
    return [
        *STRUCTURAL_TOKENS,
        *(f"<height_{s}>" for s in resolution_tag_sizes()),
        *(f"<width_{s}>" for s in resolution_tag_sizes()),
        *(semantic_code_token(k) for k in range(semantic_codebook_size)),
        *(pixel_code_token(k) for k in range(pixel_codebook_size)),
    ]


def num_added_tokens(semantic_codebook_size: int, pixel_codebook_size: int) -> int:
    return len(STRUCTURAL_TOKENS) + 2 * len(resolution_tag_sizes()) + semantic_codebook_size + pixel_codebook_size


def extended_vocab_rows(original_embedding_rows: int, semantic_codebook_size: int, pixel_codebook_size: int) -> int:
    """Embedding rows after the extension: original rows + added tokens (the authors' rule; not
    len(tokenizer) + added, which differs when the base embedding is padded, as Qwen2.5's is)."""
    return original_embedding_rows + num_added_tokens(semantic_codebook_size, pixel_codebook_size)


def extend_tokenizer(tokenizer, semantic_codebook_size: int, pixel_codebook_size: int) -> int:
    """Add the image vocabulary to `tokenizer` in place (plain `add_tokens`). Returns how many
    tokens were added. A tokenizer that already holds exactly this vocabulary is left alone."""
    tokens = added_token_strings(semantic_codebook_size, pixel_codebook_size)
    if _token_id(tokenizer, tokens[0]) is not None:
        TokenLayout.from_tokenizer(tokenizer, semantic_codebook_size, pixel_codebook_size)  # validates
        return 0
    n = tokenizer.add_tokens(tokens)
    if n != len(tokens):
        raise ValueError(f"the tokenizer already held {len(tokens) - n} of the image tokens; "
                         "extend a plain text tokenizer")
    return n


@dataclass(frozen=True)
class TokenLayout:
    """Every special id ILLUME+ needs, read from an extended tokenizer."""

    start_of_image: int
    end_of_image: int
    end_of_line: int
    start_of_level0: int
    end_of_level0: int
    start_of_level1: int
    end_of_level1: int
    height_tags: tuple[tuple[int, int], ...]  # (pixels, id)
    width_tags: tuple[tuple[int, int], ...]
    semantic_code_start: int
    semantic_codebook_size: int
    pixel_code_start: int
    pixel_codebook_size: int
    im_start: int
    im_end: int
    pad_token_id: int
    end_of_text: int | None = None  # <|endoftext|>, Qwen's document end: also ends a reply

    @classmethod
    def from_tokenizer(cls, tokenizer, semantic_codebook_size: int, pixel_codebook_size: int) -> "TokenLayout":
        def token_id(token: str) -> int:
            found = _token_id(tokenizer, token)
            if found is None:
                raise ValueError(f"token {token!r} is missing from the tokenizer; "
                                 "extend it first (illume_plus.mllm.vocab.extend_tokenizer)")
            return found

        def contiguous_range(make, size: int, what: str) -> int:
            first, last = token_id(make(0)), token_id(make(size - 1))
            if last - first != size - 1:
                raise ValueError(f"{what} ids are not contiguous ({first}..{last} for {size} codes)")
            if _token_id(tokenizer, make(size)) is not None:
                raise ValueError(f"the tokenizer holds more {what} than the codebook size {size}")
            return first

        structural = {t.strip("<>"): token_id(t) for t in STRUCTURAL_TOKENS}
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise ValueError("the tokenizer has neither a pad nor an eos token")
        return cls(
            **structural,
            height_tags=tuple((s, token_id(f"<height_{s}>")) for s in resolution_tag_sizes()),
            width_tags=tuple((s, token_id(f"<width_{s}>")) for s in resolution_tag_sizes()),
            semantic_code_start=contiguous_range(semantic_code_token, semantic_codebook_size, "semantic code"),
            semantic_codebook_size=semantic_codebook_size,
            pixel_code_start=contiguous_range(pixel_code_token, pixel_codebook_size, "pixel code"),
            pixel_codebook_size=pixel_codebook_size,
            im_start=token_id(CHAT_START),
            im_end=token_id(CHAT_END),
            pad_token_id=pad,
            end_of_text=_token_id(tokenizer, END_OF_TEXT),
        )

    # -- ranges and tags --
    @property
    def eos_token_id(self) -> int:
        return self.im_end  # a chat reply ends with <|im_end|>

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Ids that end a text reply: <|im_end|> and <|endoftext|> (the released generation
        config's eos ids)."""
        return tuple(i for i in (self.im_end, self.end_of_text) if i is not None)

    @property
    def semantic_range(self) -> tuple[int, int]:
        return self.semantic_code_start, self.semantic_code_start + self.semantic_codebook_size

    @property
    def pixel_range(self) -> tuple[int, int]:
        return self.pixel_code_start, self.pixel_code_start + self.pixel_codebook_size

    @property
    def structural_ids(self) -> tuple[int, ...]:
        return (self.start_of_image, self.end_of_image, self.end_of_line, self.start_of_level0,
                self.end_of_level0, self.start_of_level1, self.end_of_level1)

    def height_tag(self, height: int) -> int:
        return _tag(self.height_tags, height, "height")

    def width_tag(self, width: int) -> int:
        return _tag(self.width_tags, width, "width")

    def resolution_tag_ids(self, height: int, width: int) -> list[int]:
        return [self.height_tag(height), self.width_tag(width)]

    @staticmethod
    def resolution_tag_text(height: int, width: int) -> str:
        return f"<height_{height}><width_{width}>"

    # -- codes <-> ids --
    def semantic_ids(self, codes: torch.Tensor) -> torch.Tensor:
        return _codes_to_ids(codes, self.semantic_code_start, self.semantic_codebook_size, "semantic")

    def pixel_ids(self, codes: torch.Tensor) -> torch.Tensor:
        return _codes_to_ids(codes, self.pixel_code_start, self.pixel_codebook_size, "pixel")

    def semantic_codes(self, ids: torch.Tensor) -> torch.Tensor:
        return _ids_to_codes(ids, self.semantic_code_start, self.semantic_codebook_size, "semantic")

    def pixel_codes(self, ids: torch.Tensor) -> torch.Tensor:
        return _ids_to_codes(ids, self.pixel_code_start, self.pixel_codebook_size, "pixel")

    def is_semantic_code(self, ids: torch.Tensor) -> torch.Tensor:
        lo, hi = self.semantic_range
        return (ids >= lo) & (ids < hi)

    def is_pixel_code(self, ids: torch.Tensor) -> torch.Tensor:
        lo, hi = self.pixel_range
        return (ids >= lo) & (ids < hi)

    def is_image_token(self, ids: torch.Tensor) -> torch.Tensor:
        structural = torch.tensor(self.structural_ids, device=ids.device)
        return self.is_semantic_code(ids) | self.is_pixel_code(ids) | torch.isin(ids, structural)

    def text_banned_ids(self) -> torch.Tensor:
        """Ids never sampled in text: the codes, the level markers and <end_of_line> (SPEC §3).
        (<start_of_image> and <end_of_image> stay allowed: text may open an image.)"""
        return torch.cat([
            torch.arange(*self.semantic_range), torch.arange(*self.pixel_range),
            torch.tensor([self.end_of_line, self.start_of_level0, self.end_of_level0,
                          self.start_of_level1, self.end_of_level1]),
        ])


def _token_id(tokenizer, token: str) -> int | None:
    """The id of `token` if the tokenizer holds it as one token, else None. (Looked up one token
    at a time: get_vocab() on a 283k-entry tokenizer costs a second.)"""
    found = tokenizer.convert_tokens_to_ids(token)
    if found is None or tokenizer.convert_ids_to_tokens(found) != token:
        return None  # unknown tokens map to unk (or None)
    return found


def _tag(tags, size: int, what: str) -> int:
    for pixels, token in tags:
        if pixels == size:
            return token
    raise ValueError(f"no <{what}_{size}> token: tags exist for multiples of {RESOLUTION_TAG_STEP} "
                     f"up to {RESOLUTION_TAG_MAX}")


def _codes_to_ids(codes: torch.Tensor, start: int, size: int, what: str) -> torch.Tensor:
    codes = torch.as_tensor(codes, dtype=torch.long)
    if codes.numel() and (codes.min() < 0 or codes.max() >= size):
        raise ValueError(f"{what} codes must lie in [0, {size}), got [{int(codes.min())}, {int(codes.max())}]")
    return codes + start


def _ids_to_codes(ids: torch.Tensor, start: int, size: int, what: str) -> torch.Tensor:
    ids = torch.as_tensor(ids, dtype=torch.long)
    codes = ids - start
    if codes.numel() and (codes.min() < 0 or codes.max() >= size):
        raise ValueError(f"ids outside the {what} code range [{start}, {start + size})")
    return codes


__all__ = ["TokenLayout", "extend_tokenizer", "added_token_strings", "num_added_tokens", "extended_vocab_rows",
           "STRUCTURAL_TOKENS", "resolution_tag_sizes"]
