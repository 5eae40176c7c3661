"""An image's place in the token sequence (SPEC §3 "Image sequence").

Every image, whether read (continuous features) or written (discrete codes), takes the same frame:

    [<height_H><width_W>] <start_of_image> <start_of_level0>
        h1 rows of (w1 semantic slots, <end_of_line>)
    <end_of_level0> <start_of_level1>
        h2 rows of (w2 pixel slots, <end_of_line>)
    <end_of_level1> <end_of_image>

(h1, w1) is the semantic grid (28x downsampling after DualViTok's resolution mapping) and
(h2, w2) the pixel grid (16x). A slot holds a code id for a discrete image, or a placeholder
that the model overwrites with an adaptor feature for a continuous one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..tokenizer.preprocess import semantic_input_size
from .vocab import TokenLayout

FORCED = -1  # frame_code_levels: a structural token, not a code


@dataclass(frozen=True)
class FrameSpec:
    """The grids of an H x W image."""

    height: int
    width: int
    semantic_grid: tuple[int, int]
    pixel_grid: tuple[int, int]

    @classmethod
    def for_size(cls, height: int, width: int, tokenizer_config) -> "FrameSpec":
        """Grids from a `DualViTokConfig` (its semantic resolution mapping and downsampling)."""
        down = tokenizer_config.pixel_downsample
        if height % down or width % down:
            raise ValueError(f"image size {height}x{width} is not a multiple of {down} (pixel grid)")
        patch = tokenizer_config.semantic_downsample
        sh, sw = semantic_input_size(height, width, tokenizer_config.resolution_mapping, patch=patch)
        return cls(height, width, (sh // patch, sw // patch), (height // down, width // down))

    @property
    def num_semantic_codes(self) -> int:
        return self.semantic_grid[0] * self.semantic_grid[1]

    @property
    def num_pixel_codes(self) -> int:
        return self.pixel_grid[0] * self.pixel_grid[1]

    @property
    def num_tokens(self) -> int:
        """Tokens from <start_of_image> to <end_of_image> inclusive (512x512: 1404)."""
        (h1, w1), (h2, w2) = self.semantic_grid, self.pixel_grid
        return 2 + 2 + h1 * (w1 + 1) + 2 + h2 * (w2 + 1)


@dataclass
class FrameTokens:
    ids: torch.Tensor  # (n,) long
    semantic_slots: torch.Tensor  # (h1*w1,) offsets into ids, row-major
    pixel_slots: torch.Tensor  # (h2*w2,)


def frame_code_levels(spec: FrameSpec) -> torch.Tensor:
    """(num_tokens,) per frame position from <start_of_image>: 0 = semantic code, 1 = pixel code,
    FORCED (-1) = a structural token whose id `structure_template` gives."""
    def level(grid, value):
        h, w = grid
        row = torch.cat([torch.full((w,), value), torch.tensor([FORCED])])
        return row.repeat(h)

    forced2 = torch.full((2,), FORCED)
    return torch.cat([forced2, level(spec.semantic_grid, 0), forced2, level(spec.pixel_grid, 1), forced2]).long()


def structure_template(layout: TokenLayout, spec: FrameSpec) -> torch.Tensor:
    """(num_tokens,) the forced ids of a frame, with FORCED (-1) where a code goes."""
    return frame_ids(layout, spec, fill=FORCED).ids


def frame_ids(layout: TokenLayout, spec: FrameSpec, semantic_codes: torch.Tensor | None = None,
              pixel_codes: torch.Tensor | None = None, resolution_tag: bool = False,
              fill: int | None = None) -> FrameTokens:
    """The frame of one image. With codes it is a discrete frame (slots hold code ids); without,
    slots hold `fill` (default: the pad id), to be replaced by continuous features. With
    `resolution_tag` the frame starts with <height_H><width_W>."""
    if (semantic_codes is None) != (pixel_codes is None):
        raise ValueError("give both semantic and pixel codes (discrete frame) or neither (continuous frame)")
    fill = layout.pad_token_id if fill is None else fill
    if semantic_codes is None:
        semantic = torch.full(spec.semantic_grid, fill, dtype=torch.long)
        pixel = torch.full(spec.pixel_grid, fill, dtype=torch.long)
    else:
        semantic = layout.semantic_ids(_check_grid(semantic_codes, spec.semantic_grid, "semantic"))
        pixel = layout.pixel_ids(_check_grid(pixel_codes, spec.pixel_grid, "pixel"))

    def rows(grid: torch.Tensor) -> torch.Tensor:
        eol = torch.full((grid.shape[0], 1), layout.end_of_line, dtype=torch.long)
        return torch.cat([grid, eol], dim=1).flatten()

    tag = layout.resolution_tag_ids(spec.height, spec.width) if resolution_tag else []
    head = torch.tensor([*tag, layout.start_of_image, layout.start_of_level0])
    middle = torch.tensor([layout.end_of_level0, layout.start_of_level1])
    tail = torch.tensor([layout.end_of_level1, layout.end_of_image])
    ids = torch.cat([head, rows(semantic), middle, rows(pixel), tail])

    levels = frame_code_levels(spec)
    offset = len(tag)
    return FrameTokens(ids=ids, semantic_slots=(levels == 0).nonzero().flatten() + offset,
                       pixel_slots=(levels == 1).nonzero().flatten() + offset)


def parse_frame(layout: TokenLayout, ids: torch.Tensor, spec: FrameSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes of a generated frame: `ids` runs from <start_of_image> to <end_of_image> inclusive.
    Returns (semantic codes (h1, w1), pixel codes (h2, w2)); raises if the structure is broken."""
    ids = torch.as_tensor(ids, dtype=torch.long).flatten().cpu()
    if ids.numel() != spec.num_tokens:
        raise ValueError(f"a {spec.height}x{spec.width} frame has {spec.num_tokens} tokens, got {ids.numel()}")
    levels = frame_code_levels(spec)
    template = structure_template(layout, spec)
    forced = levels == FORCED
    wrong = (ids[forced] != template[forced]).nonzero().flatten()
    if wrong.numel():
        at = int(forced.nonzero().flatten()[wrong[0]])
        raise ValueError(f"broken image frame: position {at} holds id {int(ids[at])}, expected {int(template[at])}")
    semantic = layout.semantic_codes(ids[levels == 0]).view(spec.semantic_grid)
    pixel = layout.pixel_codes(ids[levels == 1]).view(spec.pixel_grid)
    return semantic, pixel


def _check_grid(codes, grid: tuple[int, int], what: str) -> torch.Tensor:
    codes = torch.as_tensor(codes, dtype=torch.long)
    if tuple(codes.shape) != tuple(grid):
        raise ValueError(f"{what} codes have shape {tuple(codes.shape)}, the frame needs {tuple(grid)}")
    return codes


__all__ = ["FrameSpec", "FrameTokens", "frame_ids", "frame_code_levels", "structure_template", "parse_frame",
           "FORCED"]
