"""Metrics to a JSON-lines file and a progress bar, from rank 0 only."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

from tqdm.auto import tqdm

from ..utils.io import atomic_path

logger = logging.getLogger(__name__)


class MetricsLogger:
    """Appends one JSON object per call to `path` (rank 0 only; other ranks are no-ops).

    Lines are appended (a log is written many times; rewriting it each time would be
    quadratic). On resume, `truncate_after(step)` drops lines logged after the checkpoint,
    so a resumed run's log reads as one uninterrupted run.
    """

    def __init__(self, path: str | Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        record = {"step": step, "time": round(time.time(), 3)}
        record.update({k: _plain(v) for k, v in metrics.items()})
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Keep only the lines of steps <= `step` (and drop unparsable ones: a line torn by a kill)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [line for line, record in _parsed_lines(self.path, strict=False)
                if record is not None and record.get("step", 0) <= step]
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def start(self, resumed_step: int | None) -> None:
        """Call once when a run starts: the log keeps what happened up to `resumed_step` (the
        checkpoint the run resumes from; None for a fresh start keeps nothing), so a run killed
        after logging past its last checkpoint, or before its first, logs no step twice."""
        if resumed_step is None:
            if self.enabled and self.path.is_file():
                with atomic_path(self.path) as tmp:
                    tmp.write_text("", encoding="utf-8")
            return
        self.truncate_after(resumed_step)


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a metrics log. A torn LAST line (the writer was killed mid-line) is
    skipped; an unparsable line elsewhere is an error naming file and line."""
    return [record for _, record in _parsed_lines(Path(path), strict=True) if record is not None]


def _parsed_lines(path: Path, strict: bool) -> list[tuple[str, dict | None]]:
    numbered = [(number, line) for number, line in
                enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1) if line.strip()]
    parsed = []
    for i, (number, line) in enumerate(numbered):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if strict and i < len(numbered) - 1:
                raise ValueError(f"{path}:{number}: not a metrics record ({e})") from None
            logger.warning("%s:%d: skipping a torn or unparsable line", path, number)
            record = None
        parsed.append((line, record))
    return parsed


class ProgressBar:
    """tqdm bar over optimisation steps showing losses and throughput (rank 0 only)."""

    def __init__(self, total: int, initial: int = 0, enabled: bool = True, desc: str = "train", unit: str = "img"):
        self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, disable=not enabled)
        self.unit = unit  # what `update` counts: images, tokens...
        self._last_time = time.perf_counter()
        self._images = 0

    def update(self, step: int, images: int, metrics: dict) -> float:
        """Advance one step; returns `unit`s (images) per second since the previous call."""
        now = time.perf_counter()
        images_per_second = images / max(now - self._last_time, 1e-9)
        self._last_time = now
        shown = {k: f"{v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        self.bar.set_postfix(step=step, **shown, **{f"{self.unit}_s": f"{images_per_second:.1f}"}, refresh=False)
        self.bar.update(1)
        return images_per_second

    def close(self) -> None:
        self.bar.close()


def _plain(value):
    if hasattr(value, "item") and getattr(value, "numel", lambda: 2)() == 1:
        return value.item()
    return value
