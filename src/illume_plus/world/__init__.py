"""Shape world: a deterministic toy world (scenes, renders, texts, splits) on which the whole
ILLUME+ recipe trains on a CPU, and programmatic judges that score what it learned."""

from .render import IMAGE_SIZE, render_scene
from .scene import CELL_NAMES, COLOURS, KINDS, SIZES, Background, Scene, WorldObject, sample_scene
from .splits import SPLIT_BASES, WorldExample, example, examples, split_seed

__all__ = ["IMAGE_SIZE", "render_scene", "CELL_NAMES", "COLOURS", "KINDS", "SIZES", "Background", "Scene",
           "WorldObject", "sample_scene", "SPLIT_BASES", "WorldExample", "example", "examples", "split_seed"]
