"""Train / validation / test splits by disjoint seeds, and the examples each seed yields.

Example i of a split is drawn from seed `SPLIT_BASES[split] + i`; the bases are 10^8 apart
and a split holds at most 10^8 examples, so no seed is ever shared between splits. (Two
seeds can still draw the same object set by chance: the world has ~10^7 of them; the
held-out metrics are on unseen seeds, as GenEval's prompts are unseen prompts.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .render import IMAGE_SIZE, render_scene
from .scene import Scene, sample_scene
from .text import QA, Edit, caption, describe_request, edit, question

SPLIT_SIZE = 10**8
SPLIT_BASES = {"train": 0, "val": SPLIT_SIZE, "test": 2 * SPLIT_SIZE}


def split_seed(split: str, index: int) -> int:
    if split not in SPLIT_BASES:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLIT_BASES)}")
    if not 0 <= index < SPLIT_SIZE:
        raise ValueError(f"example index must lie in [0, {SPLIT_SIZE}), got {index}")
    return SPLIT_BASES[split] + index


@dataclass(frozen=True)
class WorldExample:
    """Everything one seed yields: a scene and one text of each task about it."""

    seed: int
    scene: Scene
    caption: str
    qa: QA
    describe: QA
    edit: Edit

    def image(self, size: int = IMAGE_SIZE) -> Image.Image:
        return render_scene(self.scene, size)

    def edited_image(self, size: int = IMAGE_SIZE) -> Image.Image:
        return render_scene(self.edit.target, size)


def example(split: str, index: int) -> WorldExample:
    seed = split_seed(split, index)
    rng = np.random.default_rng(seed)
    scene = sample_scene(rng)
    # Each text has its own stream, so adding a task never changes the others' draws.
    text_rngs = [np.random.default_rng([seed, k]) for k in range(4)]
    return WorldExample(seed, scene, caption(scene, text_rngs[0]), question(scene, text_rngs[1]),
                        describe_request(scene, text_rngs[2]), edit(scene, text_rngs[3]))


def examples(split: str, count: int, start: int = 0) -> list[WorldExample]:
    return [example(split, start + i) for i in range(count)]


__all__ = ["SPLIT_BASES", "SPLIT_SIZE", "split_seed", "WorldExample", "example", "examples"]
