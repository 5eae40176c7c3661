"""Words about scenes: captions, question-answer pairs, edit instructions and plain chat.

Every text is drawn with a numpy Generator, so a (seed, task) pair always gives the same text.
Captions name every object's size, colour, kind and cell, so a caption determines the scene's
object set (the background is free): generation can be judged exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .scene import CELL_NAMES, COLOURS, GRID, KINDS, MAX_OBJECTS, SIZES, Scene, WorldObject, random_object

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five")


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _plural(kind: str) -> str:
    return kind + ("es" if kind.endswith("s") else "s")


# ----------------------------------------------------------------------------- phrases
def where(cell: int) -> str:
    """'in the center', 'at the top left', ..."""
    return "in the center" if CELL_NAMES[cell] == "center" else f"at the {CELL_NAMES[cell]}"


def object_phrase(obj: WorldObject, article: str = "a") -> str:
    return f"{article} {obj.size} {obj.colour} {obj.kind}"


def reference(scene: Scene, obj: WorldObject) -> str:
    """The shortest unambiguous name of `obj` in `scene`: 'the red circle', or with its place
    when another object has the same colour and kind."""
    twins = [o for o in scene.objects if o.kind == obj.kind and o.colour == obj.colour]
    base = f"the {obj.colour} {obj.kind}"
    return base if len(twins) == 1 else f"{base} {where(obj.cell)}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# ----------------------------------------------------------------------------- captions
def caption(scene: Scene, rng: np.random.Generator) -> str:
    """One of several phrasings; all name every object fully (size, colour, kind, cell), in
    reading order (top left to bottom right), the order the image tokens are generated in."""
    listed = _join([f"{object_phrase(o)} {where(o.cell)}" for o in scene.objects])
    n = len(scene.objects)
    count = f"{NUMBER_WORDS[n]} object" + ("s" if n > 1 else "")
    style = int(rng.integers(4))
    if style == 0:
        return listed
    if style == 1:
        return f"{count}: {listed}"
    if style == 2:
        return f"a picture of {listed}"
    return f"{listed} on a light background"


# ----------------------------------------------------------------------------- questions
@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    kind: str  # question type: colour, kind, count, position, exists, left_of, describe


def _colour_question(scene, rng):
    obj = _pick(rng, scene.objects)
    q = _pick(rng, ("What colour is the {k} {w}?", "What is the colour of the {k} {w}?"))
    return QA(q.format(k=obj.kind, w=where(obj.cell)), obj.colour, "colour")


def _kind_question(scene, rng):
    obj = _pick(rng, scene.objects)
    q = _pick(rng, ("What shape is {w}?", "Which shape is {w}?", "What is the {c} object {w}?"))
    return QA(q.format(w=where(obj.cell), c=obj.colour), obj.kind, "kind")


def _count_question(scene, rng):
    if rng.random() < 0.5:
        return QA(_pick(rng, ("How many objects are there?", "How many shapes are in the picture?")),
                  NUMBER_WORDS[len(scene.objects)], "count")
    colour = _pick(rng, list(COLOURS))
    n = sum(o.colour == colour for o in scene.objects)
    return QA(f"How many {colour} objects are there?", NUMBER_WORDS[n], "count")


def _position_question(scene, rng):
    obj = _pick(rng, scene.objects)
    return QA(f"Where is {reference(scene, obj)}?", CELL_NAMES[obj.cell], "position")


def _exists_question(scene, rng):
    if rng.random() < 0.5:  # ask about a present pair half of the time, so "yes" and "no" are balanced
        obj = _pick(rng, scene.objects)
        colour, kind = obj.colour, obj.kind
    else:
        colour, kind = _pick(rng, list(COLOURS)), _pick(rng, KINDS)
    present = any(o.colour == colour and o.kind == kind for o in scene.objects)
    return QA(f"Is there a {colour} {kind}?", "yes" if present else "no", "exists")


def left_neighbour(scene: Scene, obj: WorldObject) -> WorldObject | None:
    """The nearest object in the same row to the left of `obj`."""
    left = [o for o in scene.objects if o.row == obj.row and o.column < obj.column]
    return max(left, key=lambda o: o.column) if left else None


def _left_of_question(scene, rng):
    obj = _pick(rng, scene.objects)
    other = left_neighbour(scene, obj)
    answer = "nothing" if other is None else f"{other.colour} {other.kind}"
    return QA(f"What is left of {reference(scene, obj)}?", answer, "left_of")


_QUESTIONS = {"colour": _colour_question, "kind": _kind_question, "count": _count_question,
              "position": _position_question, "exists": _exists_question, "left_of": _left_of_question}
QUESTION_TYPES = tuple(_QUESTIONS)


def question(scene: Scene, rng: np.random.Generator, qtype: str | None = None) -> QA:
    qtype = _pick(rng, QUESTION_TYPES) if qtype is None else qtype
    if qtype not in _QUESTIONS:
        raise ValueError(f"unknown question type {qtype!r}; choose one of {QUESTION_TYPES}")
    return _QUESTIONS[qtype](scene, rng)


def describe_request(scene: Scene, rng: np.random.Generator) -> QA:
    """'Describe the picture.' answered with a caption (the understanding counterpart of t2i)."""
    q = _pick(rng, ("Describe the picture.", "What is in the image?", "Describe the image briefly."))
    return QA(q, caption(scene, rng), "describe")


_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalise_answer(text: str) -> str:
    """Lower case, no punctuation or articles, digits as words: the exact-match form."""
    text = text.lower().strip()
    text = re.sub(r"[^a-z0-9 ]+", " ", text)
    text = _ARTICLES.sub(" ", text)
    words = [NUMBER_WORDS[int(w)] if w.isdigit() and int(w) < len(NUMBER_WORDS) else w for w in text.split()]
    return " ".join(words)


def answer_options(qtype: str) -> list[str]:
    """Every answer a question type can have (for the uniform-guess chance level)."""
    if qtype == "colour":
        return list(COLOURS)
    if qtype == "kind":
        return list(KINDS)
    if qtype == "count":
        return list(NUMBER_WORDS[: MAX_OBJECTS + 1])
    if qtype == "position":
        return list(CELL_NAMES)
    if qtype == "exists":
        return ["yes", "no"]
    if qtype == "left_of":
        return ["nothing"] + [f"{c} {k}" for c in COLOURS for k in KINDS]
    raise ValueError(f"no fixed answer set for question type {qtype!r}")


# ----------------------------------------------------------------------------- edits
EDIT_TYPES = ("recolour", "remove", "add", "move")


@dataclass(frozen=True)
class Edit:
    instruction: str
    kind: str  # one of EDIT_TYPES
    target: Scene  # the exact scene after the edit
    cells: tuple[int, ...]  # cells the edit may change (the rest must be preserved)


def edit(scene: Scene, rng: np.random.Generator, etype: str | None = None) -> Edit:
    """A random edit of `scene` of type `etype` (any possible type when None)."""
    possible = [t for t in EDIT_TYPES if _edit_possible(scene, t)]
    etype = _pick(rng, possible) if etype is None else etype
    if etype not in possible:
        raise ValueError(f"edit {etype!r} is impossible on this scene (possible: {possible})")
    obj = _pick(rng, scene.objects)
    others = [o for o in scene.objects if o is not obj]
    ref = reference(scene, obj)
    if etype == "recolour":
        colour = _pick(rng, [c for c in COLOURS if c != obj.colour])
        new = WorldObject(obj.cell, obj.kind, colour, obj.size)
        text = _pick(rng, ("Make {r} {c}.", "Change the colour of {r} to {c}.", "Paint {r} {c}."))
        return Edit(text.format(r=ref, c=colour), etype, scene.with_objects(others + [new]), (obj.cell,))
    if etype == "remove":
        text = _pick(rng, ("Remove {r}.", "Delete {r}.", "Take away {r}."))
        return Edit(text.format(r=ref), etype, scene.with_objects(others), (obj.cell,))
    cell = int(_pick(rng, scene.empty_cells()))
    if etype == "add":
        new = random_object(rng, cell)
        text = _pick(rng, ("Add {o} {w}.", "Put {o} {w}.", "Draw {o} {w}."))
        return Edit(text.format(o=object_phrase(new), w=where(cell)), etype,
                    scene.with_objects(list(scene.objects) + [new]), (cell,))
    moved = WorldObject(cell, obj.kind, obj.colour, obj.size)
    text = _pick(rng, ("Move {r} to the {p}.", "Put {r} {w} instead."))
    return Edit(text.format(r=ref, p=CELL_NAMES[cell], w=where(cell)), etype,
                scene.with_objects(others + [moved]), (obj.cell, cell))


def _edit_possible(scene: Scene, etype: str) -> bool:
    n = len(scene.objects)
    return {"recolour": True, "remove": n > 1, "add": n < MAX_OBJECTS, "move": n < GRID * GRID}[etype]


# ----------------------------------------------------------------------------- chat
CHAT = (
    ("Hello!", "Hello! I can describe, draw and edit pictures of simple shapes."),
    ("Hi", "Hi! Ask me about a picture, or ask me to draw one."),
    ("What can you do?", "I can answer questions about pictures of shapes, draw a picture from a description and edit a picture."),
    ("Who are you?", "I am a small assistant trained on a world of simple shapes."),
    ("Which colours do you know?", "I know " + _join(list(COLOURS)) + "."),
    ("Which shapes do you know?", "I know the " + _join(list(KINDS)) + "."),
    ("Which sizes do you know?", "Shapes are " + " or ".join(SIZES) + "."),
    ("Where can a shape be?", "A shape can be " + _join([where(c) for c in range(GRID * GRID)]) + "."),
    ("How many shapes can a picture have?", f"A picture has one to {NUMBER_WORDS[MAX_OBJECTS]} shapes."),
    ("Thank you!", "You are welcome!"),
    ("Thanks", "You are welcome!"),
    ("Goodbye", "Goodbye! Come back with more pictures."),
    ("What is two plus two?", "Two plus two is four."),
    ("What is one plus two?", "One plus two is three."),
    ("Can you draw a cat?", "I can only draw circles, squares, triangles, stars and crosses."),
    ("Tell me a joke.", "Why did the square stay calm? It had four right angles to lean on."),
)


def chat_turn(rng: np.random.Generator) -> tuple[str, str]:
    return CHAT[int(rng.integers(len(CHAT)))]


def corpus_for_tokenizer() -> list[str]:
    """Every word the world can produce, in the contexts it appears in (for the BPE)."""
    rng = np.random.default_rng(0)
    from .scene import sample_scene

    lines = [f"{q} {a}" for q, a in CHAT]
    for _ in range(400):
        scene = sample_scene(rng)
        lines.append(caption(scene, rng))
        for qtype in QUESTION_TYPES:
            qa = question(scene, rng, qtype)
            lines.append(f"{qa.question} {qa.answer}")
        lines.append(describe_request(scene, rng).question)
        lines.append(edit(scene, rng).instruction)
    lines += [f"{c} {k}" for c in COLOURS for k in KINDS] + [_plural(k) for k in KINDS] + list(NUMBER_WORDS)
    return lines


__all__ = ["caption", "question", "describe_request", "edit", "chat_turn", "normalise_answer", "answer_options",
           "reference", "where", "left_neighbour", "corpus_for_tokenizer", "QA", "Edit", "QUESTION_TYPES",
           "EDIT_TYPES", "CHAT", "NUMBER_WORDS"]
