"""World metrics: generation (GenEval-style), VQA, editing; each accuracy with its chance level.

The scoring functions take what the detector read (object lists) and what was asked (scenes,
answers), so they can be checked on hand-made cases. Chance levels:
- generation / edit: the score of a "generator" that ignores the prompt and returns a random
  scene from the world's prior (generation), or applies a random valid edit to the source
  (editing), measured on the same prompts with many draws (exact on object sets; no renders).
- VQA: uniform guessing among each question type's possible answers (`*_chance`), and the
  best constant answer per question type (`*_majority`), the stronger baseline.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Sequence

import numpy as np

from ..evaluation.metrics import psnr as _psnr_metric
from .scene import Scene, WorldObject, sample_scene
from .text import QA, Edit, answer_options, edit, normalise_answer

CHANCE_DRAWS = 20  # random draws per prompt when measuring a chance level


# ----------------------------------------------------------------------------- generation
def generation_scores(prompts: Sequence[Scene], detected: Sequence[Sequence[WorldObject]]) -> dict:
    """GenEval-style: an image is correct when its detected (kind, colour, cell) set equals
    the prompt's. Per attribute (over prompted objects): position = some object in the cell,
    colour / kind / size = the object in the cell has it. Count = as many objects as asked."""
    if len(prompts) != len(detected):
        raise ValueError(f"{len(prompts)} prompts but {len(detected)} detections")
    if not prompts:
        raise ValueError("no prompts to score")
    exact = count = 0
    hits = Counter()
    objects = 0
    for scene, found in zip(prompts, detected):
        exact += sorted(o.key() for o in found) == scene.keys()
        count += len(found) == len(scene.objects)
        by_cell = {}
        for o in found:
            by_cell.setdefault(o.cell, o)
        for o in scene.objects:
            objects += 1
            got = by_cell.get(o.cell)
            if got is None:
                continue
            hits["position"] += 1
            hits["colour"] += got.colour == o.colour
            hits["kind"] += got.kind == o.kind
            hits["size"] += got.size == o.size
    n = len(prompts)
    return {"generation_accuracy": exact / n, "generation_count_accuracy": count / n,
            **{f"generation_{a}_accuracy": hits[a] / objects for a in ("position", "colour", "kind", "size")}}


def generation_chance(prompts: Sequence[Scene], seed: int = 0, draws: int = CHANCE_DRAWS) -> dict:
    """`generation_scores` of a prompt-blind generator drawing scenes from the world's prior."""
    rng = np.random.default_rng(seed)
    repeated = [p for p in prompts for _ in range(draws)]
    scores = generation_scores(repeated, [sample_scene(rng).objects for _ in repeated])
    return {f"{k}_chance": v for k, v in scores.items()}


# ----------------------------------------------------------------------------- VQA
def vqa_scores(questions: Sequence[QA], answers: Sequence[str]) -> dict:
    """Exact match after `normalise_answer`; overall, per question type, and both baselines."""
    if len(questions) != len(answers):
        raise ValueError(f"{len(questions)} questions but {len(answers)} answers")
    if not questions:
        raise ValueError("no questions to score")
    right = defaultdict(list)
    for qa, answer in zip(questions, answers):
        right[qa.kind].append(normalise_answer(answer) == normalise_answer(qa.answer))
    n = len(questions)
    out = {"vqa_accuracy": sum(sum(v) for v in right.values()) / n}
    for kind, values in sorted(right.items()):
        out[f"vqa_{kind}_accuracy"] = sum(values) / len(values)
    out["vqa_accuracy_chance"] = sum(1 / len(answer_options(qa.kind)) for qa in questions) / n
    by_kind = defaultdict(Counter)
    for qa in questions:
        by_kind[qa.kind][normalise_answer(qa.answer)] += 1
    out["vqa_accuracy_majority"] = sum(c.most_common(1)[0][1] for c in by_kind.values()) / n
    return out


# ----------------------------------------------------------------------------- editing
def edit_success(edits: Sequence[Edit], detected: Sequence[Sequence[WorldObject]]) -> float:
    """Fraction of edits whose output's detected (kind, colour, cell) set equals the target's:
    the asked change happened and nothing else in the object set changed."""
    if len(edits) != len(detected):
        raise ValueError(f"{len(edits)} edits but {len(detected)} detections")
    if not edits:
        raise ValueError("no edits to score")
    return sum(sorted(o.key() for o in found) == e.target.keys() for e, found in zip(edits, detected)) / len(edits)


def edit_chance(sources: Sequence[Scene], edits: Sequence[Edit], seed: int = 0, draws: int = CHANCE_DRAWS) -> float:
    """`edit_success` of an editor that ignores the instruction and applies a random valid edit."""
    rng = np.random.default_rng(seed)
    pairs = [(s, e) for s, e in zip(sources, edits) for _ in range(draws)]
    return edit_success([e for _, e in pairs], [edit(s, rng).target.objects for s, _ in pairs])


def preservation_psnr(output: np.ndarray, source: np.ndarray, keep: np.ndarray) -> float:
    """PSNR (dB, images as uint8 (H, W, 3)) of `output` against `source` over the pixels `keep`
    marks (the cells the edit must not touch); inf when they are identical there."""
    if output.shape != source.shape or keep.shape != output.shape[:2]:
        raise ValueError(f"shapes differ: output {output.shape}, source {source.shape}, mask {keep.shape}")
    if not keep.any():
        raise ValueError("the preserved region is empty")
    a = output[keep].astype(np.float64) / 255.0
    b = source[keep].astype(np.float64) / 255.0
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def image_psnr(output: np.ndarray, reference: np.ndarray) -> float:
    """PSNR (dB) of two uint8 (H, W, 3) images through the project's PSNR metric."""
    import torch

    to = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255.0  # noqa: E731
    return float(_psnr_metric(to(output), to(reference)).mean())


__all__ = ["generation_scores", "generation_chance", "vqa_scores", "edit_success", "edit_chance",
           "preservation_psnr", "image_psnr"]
