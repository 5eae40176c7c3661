"""Shape world scenes: what a picture contains, independent of how it is drawn or described.

A scene is 1-4 objects on a 3x3 grid (at most one object per cell, so objects never touch),
each with a kind, a colour and a size, plus a background (a light tone, plain or with a faint
texture). Everything is a pure function of a seed, so any split can be regenerated exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

KINDS = ("circle", "square", "triangle", "star", "cross")
# Saturated colours, far apart in hue, so the detector can tell them from each other and
# from the (unsaturated) background.
COLOURS = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (235, 210, 30),
    "green": (40, 170, 60),
    "blue": (40, 90, 225),
    "purple": (150, 60, 200),
}
SIZES = ("small", "large")
GRID = 3  # cells per side
# Cell index = row * GRID + column, row 0 at the top.
CELL_NAMES = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
MAX_OBJECTS = 4
BACKGROUND_STYLES = ("plain", "texture")


@dataclass(frozen=True, order=True)
class WorldObject:
    cell: int
    kind: str
    colour: str
    size: str

    @property
    def row(self) -> int:
        return self.cell // GRID

    @property
    def column(self) -> int:
        return self.cell % GRID

    def key(self) -> tuple[str, str, int]:
        """What generation accuracy compares: kind, colour and cell (GenEval-style)."""
        return (self.kind, self.colour, self.cell)


@dataclass(frozen=True)
class Background:
    tone: int  # grey level of the plain background (light: 215-245)
    style: str  # "plain" or "texture"
    texture_seed: int  # seeds the faint texture (ignored when plain)


@dataclass(frozen=True)
class Scene:
    objects: tuple[WorldObject, ...]  # sorted by cell
    background: Background

    def __post_init__(self):
        cells = [o.cell for o in self.objects]
        if not 1 <= len(cells) <= MAX_OBJECTS:
            raise ValueError(f"a scene holds 1-{MAX_OBJECTS} objects, got {len(cells)}")
        if len(set(cells)) != len(cells):
            raise ValueError(f"two objects share a cell: {cells}")
        for o in self.objects:
            if o.kind not in KINDS or o.colour not in COLOURS or o.size not in SIZES or not 0 <= o.cell < GRID * GRID:
                raise ValueError(f"invalid object {o}")
        object.__setattr__(self, "objects", tuple(sorted(self.objects)))

    def object_at(self, cell: int) -> WorldObject | None:
        return next((o for o in self.objects if o.cell == cell), None)

    def empty_cells(self) -> list[int]:
        used = {o.cell for o in self.objects}
        return [c for c in range(GRID * GRID) if c not in used]

    def keys(self) -> list[tuple[str, str, int]]:
        return sorted(o.key() for o in self.objects)

    def with_objects(self, objects) -> "Scene":
        return replace(self, objects=tuple(objects))

    def to_dict(self) -> dict:
        return {"objects": [o.__dict__.copy() for o in self.objects], "background": self.background.__dict__.copy()}

    @classmethod
    def from_dict(cls, d: dict) -> "Scene":
        return cls(tuple(WorldObject(**o) for o in d["objects"]), Background(**d["background"]))


def random_object(rng: np.random.Generator, cell: int) -> WorldObject:
    return WorldObject(cell=int(cell), kind=KINDS[rng.integers(len(KINDS))],
                       colour=list(COLOURS)[rng.integers(len(COLOURS))], size=SIZES[rng.integers(len(SIZES))])


def random_background(rng: np.random.Generator) -> Background:
    return Background(tone=int(rng.integers(215, 246)), style=BACKGROUND_STYLES[rng.integers(len(BACKGROUND_STYLES))],
                      texture_seed=int(rng.integers(2**31)))


def sample_scene(rng: np.random.Generator) -> Scene:
    """A scene from the world's prior: object count uniform in 1-4, distinct cells uniform,
    kind / colour / size uniform and independent."""
    count = int(rng.integers(1, MAX_OBJECTS + 1))
    cells = rng.choice(GRID * GRID, size=count, replace=False)
    return Scene(tuple(random_object(rng, c) for c in cells), random_background(rng))


__all__ = ["KINDS", "COLOURS", "SIZES", "GRID", "CELL_NAMES", "MAX_OBJECTS", "WorldObject", "Background",
           "Scene", "sample_scene", "random_object", "random_background"]
