"""What a chat message asks for: an answer, a new image, or an edit of the current image.

Shared by the terminal chat and the web demo, so "make it blue" means the same in both.
Explicit commands win: "/generate ...", "/edit ...", "/ask ...". Otherwise:
- "generate / draw / create / show me an image (picture, photo...) of X" -> generate X;
- an imperative edit ("make it blue", "turn the sky red", "add a hat", "remove ...")
  when there is an image to edit -> edit;
- anything else -> an answer (about the current image if there is one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GENERATE, EDIT, ANSWER = "generate", "edit", "answer"

_COMMANDS = {"/generate": GENERATE, "/gen": GENERATE, "/edit": EDIT, "/ask": ANSWER}
_MEDIUM = r"(?:image|picture|photo(?:graph)?|drawing|painting|illustration|render(?:ing)?|sketch)"
_GENERATE = re.compile(
    rf"^\s*(?:please\s+|can you\s+|could you\s+)?(?:generate|draw|paint|create|render|produce|sketch|make|show(?: me)?"
    rf"|give(?: me)?)\s+(?:me\s+)?(?:an?\s+|the\s+|one\s+|another\s+)?(?:new\s+)?{_MEDIUM}\s*(?:of|showing|with|:)?\s*(.*)$",
    re.IGNORECASE | re.DOTALL)
_BARE_GENERATE = re.compile(rf"^\s*(?:an?\s+)?{_MEDIUM}\s+of\s+(.+)$", re.IGNORECASE | re.DOTALL)
_EDIT = re.compile(
    r"^\s*(?:please\s+|now\s+|can you\s+|could you\s+)?(?:make|turn|change|add|remove|replace|edit|convert|put|"
    r"colou?r|recolou?r|paint it|swap|delete|erase|move|let|give it|set|fill|flip|rotate)\b",
    re.IGNORECASE)


@dataclass(frozen=True)
class Intent:
    task: str  # GENERATE, EDIT or ANSWER
    text: str  # the caption, the instruction or the question


def classify(message: str, has_image: bool) -> Intent:
    """The task `message` asks for; `has_image`: whether the conversation has a current image."""
    text = message.strip()
    if not text:
        raise ValueError("the message is empty")
    head, _, tail = text.partition(" ")
    if head.lower() in _COMMANDS:
        if not tail.strip():
            raise ValueError(f"{head} needs some text after it")
        return Intent(_COMMANDS[head.lower()], tail.strip())
    match = _GENERATE.match(text) or _BARE_GENERATE.match(text)
    if match and match.group(1).strip():
        return Intent(GENERATE, match.group(1).strip().rstrip("."))
    if has_image and _EDIT.match(text) and not text.endswith("?"):
        return Intent(EDIT, text)
    return Intent(ANSWER, text)
