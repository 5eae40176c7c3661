"""The decoding defaults a checkpoint folder carries in `generation_config.json`.

The authors' released folders hold Qwen2.5-Instruct's generation config; their scripts call
transformers' `generate`, which reads it: `repetition_penalty` 1.05 applies to every step
(text and image codes alike; the sampling values are overridden by their scripts) and
decoding stops at any of `eos_token_id` (`<|im_end|>` and `<|endoftext|>`). We read the
same file so that the released checkpoints decode as theirs do by default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..utils.io import load_json, save_json

GENERATION_CONFIG_NAME = "generation_config.json"

__all__ = ["GenerationDefaults", "GENERATION_CONFIG_NAME"]


@dataclass(frozen=True)
class GenerationDefaults:
    """What decoding uses unless told otherwise: the repetition penalty and extra stop ids
    (the engine always stops at `<|im_end|>` and `<|endoftext|>` too)."""

    repetition_penalty: float = 1.0
    eos_token_ids: tuple[int, ...] = ()

    def __post_init__(self):
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    @classmethod
    def from_folder(cls, directory: str | os.PathLike) -> "GenerationDefaults":
        """The folder's generation_config.json, or the plain defaults when it has none."""
        path = os.path.join(os.fspath(directory), GENERATION_CONFIG_NAME)
        if not os.path.isfile(path):
            return cls()
        raw = load_json(path)
        if not isinstance(raw, dict):
            raise ValueError(f"{path} must hold a JSON object, got {type(raw).__name__}")
        eos = raw.get("eos_token_id")
        eos = () if eos is None else (eos,) if isinstance(eos, int) else tuple(eos)
        if not all(isinstance(i, int) and i >= 0 for i in eos):
            raise ValueError(f"{path}: eos_token_id must be an id or a list of ids, got {raw.get('eos_token_id')!r}")
        penalty = raw.get("repetition_penalty")
        return cls(repetition_penalty=1.0 if penalty is None else float(penalty), eos_token_ids=eos)

    def save(self, directory: str | os.PathLike) -> None:
        """Write generation_config.json (the fields transformers knows by these names)."""
        save_json({"repetition_penalty": self.repetition_penalty, "eos_token_id": list(self.eos_token_ids)},
                  os.path.join(os.fspath(directory), GENERATION_CONFIG_NAME))
