"""The four training-data formats of the MLLM, read from JSON-lines files.

One JSON object per line (examples under examples/mllm_data/):

- "conversation" (LLaVA style; understanding, multi-image, multi-turn):
      {"image": "a.png" | ["a.png", "b.png"], "conversations": [
          {"from": "human", "value": "<image>\\nWhat is this?"}, {"from": "gpt", "value": "A cat."}]}
  Each `<image>` in a human turn takes the next image, in order; their counts must match.
  Roles: human/user, gpt/assistant, system.
- "text" (plain-text chat): the same without images.
- "t2i" (text-to-image): {"image": "x.png", "caption": "a red circle"}
- "edit": {"source": "a.png", "instruction": "make it blue", "target": "b.png"}

Relative image paths are resolved against `image_root` (default: the list file's folder).
A line that is not valid JSON or misses a field is never fatal: it is skipped, counted under a
reason, and reported as `file:line: reason` (`ReadReport`).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

FORMATS = ("conversation", "text", "t2i", "edit")
IMAGE_TOKEN = "<image>"
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


@dataclass
class Record:
    """One training sample as written in its file."""

    kind: str  # one of FORMATS
    where: str  # "file:line", for messages
    line: int  # 1-based line number in its file
    turns: list[dict] = field(default_factory=list)  # conversation/text: [{"role", "content"}]
    images: list[str] = field(default_factory=list)  # absolute paths: conversation images, or t2i image,
    #                                                    or edit [source, target]
    text: str = ""  # t2i caption or edit instruction


@dataclass
class ReadReport:
    """What reading a list file left out, by reason, with the first few places."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, reason: str, where: str, detail: str) -> None:
        self.counts[reason] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{where}: {detail}")
        logger.warning("%s: %s (skipped)", where, detail)


def read_records(path: str | Path, kind: str, image_root: str | Path | None = None,
                 report: ReadReport | None = None) -> list[Record]:
    """Every valid record of a list file; invalid lines go to `report` (never raised)."""
    if kind not in FORMATS:
        raise ValueError(f"unknown data format {kind!r}; choose one of {FORMATS}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data list not found: {path}")
    root = Path(image_root) if image_root is not None else path.parent
    report = report if report is not None else ReadReport()
    records = []
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{number}"
            try:
                obj = json.loads(raw)
                if not isinstance(obj, dict):
                    raise ValueError(f"a line must hold a JSON object, got {type(obj).__name__}")
                records.append(_PARSERS[kind](obj, where, number, root))
            except json.JSONDecodeError as e:
                report.add("bad_json", where, f"not valid JSON ({e.msg} at column {e.colno})")
            except ValueError as e:
                report.add("bad_record", where, str(e))
    return records


def _path(root: Path, value, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty path string")
    p = Path(value)
    return str(p if p.is_absolute() else root / p)


def _text(obj: dict, key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"missing or empty {key!r}")
    return value


def _conversation(obj: dict, where: str, line: int, root: Path, kind: str = "conversation") -> Record:
    turns_raw = obj.get("conversations")
    if not isinstance(turns_raw, list) or not turns_raw:
        raise ValueError("missing or empty 'conversations' list")
    images = obj.get("image", obj.get("images", []))
    images = [images] if isinstance(images, str) else list(images or [])
    if kind == "text" and images:
        raise ValueError("a plain-text sample must not have images")
    turns = []
    for i, turn in enumerate(turns_raw):
        if not isinstance(turn, dict):
            raise ValueError(f"turn {i} is not an object")
        role = _ROLES.get(turn.get("from", turn.get("role")))
        content = turn.get("value", turn.get("content"))
        if role is None:
            raise ValueError(f"turn {i} has unknown role {turn.get('from', turn.get('role'))!r}")
        if not isinstance(content, str):
            raise ValueError(f"turn {i} has no text 'value'")
        if role != "user" and IMAGE_TOKEN in content:
            raise ValueError(f"turn {i} ({role}) holds {IMAGE_TOKEN}; only user turns may")
        turns.append({"role": role, "content": content})
    if not any(t["role"] == "assistant" and t["content"] for t in turns):
        raise ValueError("no assistant reply to learn from")
    placeholders = sum(t["content"].count(IMAGE_TOKEN) for t in turns)
    if placeholders != len(images):
        raise ValueError(f"{placeholders} {IMAGE_TOKEN} placeholder(s) but {len(images)} image(s)")
    return Record(kind, where, line, turns=turns, images=[_path(root, p, "image") for p in images])


def _text_chat(obj, where, line, root) -> Record:
    return _conversation(obj, where, line, root, kind="text")


def _t2i(obj, where, line, root) -> Record:
    return Record("t2i", where, line, images=[_path(root, obj.get("image"), "'image'")], text=_text(obj, "caption"))


def _edit(obj, where, line, root) -> Record:
    return Record("edit", where, line, text=_text(obj, "instruction"),
                  images=[_path(root, obj.get("source"), "'source'"), _path(root, obj.get("target"), "'target'")])


_PARSERS = {"conversation": _conversation, "text": _text_chat, "t2i": _t2i, "edit": _edit}

__all__ = ["Record", "ReadReport", "read_records", "FORMATS", "IMAGE_TOKEN"]
