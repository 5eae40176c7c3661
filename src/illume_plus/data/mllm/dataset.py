"""A weighted mixture of MLLM data sources, as one map-style dataset.

A mixture (YAML, `sources:` list; example in examples/mllm_data/mixture.yaml) names each source's
format, list file, weight and, for t2i / edit, its pretokenised codes folder:

    sources:
      - {name: llava, format: conversation, path: data/llava.jsonl, weight: 1.0}
      - {name: t2i, format: t2i, path: data/t2i.jsonl, codes: codes/t2i, weight: 2.0}

`weight` is how many times per epoch each sample of the source is used: 2.0 = twice, 0.5 = a
random half (chosen once per run from the seed). Records that cannot be used (bad lines, images
dropped or unreadable at pretokenisation, records missing from the codes folder) are left out
at start-up and counted by reason in `report`.

Items are drawn by `BucketBatchSampler` from `sample_sizes()`: with `group_by_size`, generation
and editing samples are grouped by their target size (similar lengths in a batch), the text and
understanding samples form one more group.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from torch.utils.data import Dataset

from .codes import CodeEntry, CodeStore
from .records import FORMATS, ReadReport, Record, read_records

logger = logging.getLogger(__name__)


@dataclass
class SourceConfig:
    name: str
    format: str  # conversation | text | t2i | edit
    path: str
    weight: float = 1.0
    codes: str | None = None  # pretokenised targets (t2i, edit)
    image_root: str | None = None  # default: the list file's folder

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"source {self.name!r}: unknown format {self.format!r}; choose one of {FORMATS}")
        if self.weight < 0:
            raise ValueError(f"source {self.name!r}: weight must be >= 0, got {self.weight}")
        if self.format in ("t2i", "edit") and not self.codes:
            raise ValueError(f"source {self.name!r}: {self.format} needs `codes`, the pretokenised folder")


def load_mixture(path: str | Path | None, inline: list | None = None) -> list[SourceConfig]:
    """Sources from a mixture YAML (relative paths resolved against its folder) and/or inline dicts."""
    sources = []
    if path:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"mixture file not found: {path}")
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict) or not isinstance(raw.get("sources"), list):
            raise ValueError(f"{path}: a mixture file holds a `sources:` list")
        for entry in raw["sources"]:
            entry = dict(entry)
            for key in ("path", "codes", "image_root"):
                if entry.get(key) and not Path(entry[key]).is_absolute():
                    entry[key] = str(path.parent / entry[key])
            sources.append(entry)
    sources += list(inline or [])
    if not sources:
        raise ValueError("the data mixture has no sources (set data.mixture or data.sources)")
    try:
        built = [SourceConfig(**s) for s in sources]
    except TypeError as e:
        raise ValueError(f"bad mixture source entry: {e}") from None
    names = [s.name for s in built]
    if len(set(names)) != len(names):
        raise ValueError(f"mixture source names must be unique, got {names}")
    return built


@dataclass
class MixtureItem:
    """What the collator turns into a training sequence."""

    index: int  # position in the mixture (seeds this sample's condition dropout)
    epoch: int
    task: str  # understanding | text | t2i | edit
    record: Record
    codes: CodeEntry | None = None


def task_of(record: Record) -> str:
    if record.kind == "conversation":
        return "understanding" if record.images else "text"
    return record.kind


@dataclass
class MixtureReport:
    left_out: Counter = field(default_factory=Counter)  # reason -> records
    per_source: dict = field(default_factory=dict)  # name -> {"records", "used", "per_epoch"}


class MixtureDataset(Dataset):
    def __init__(self, sources: list[SourceConfig], seed: int = 0, group_by_size: bool = True):
        self.sources = sources
        self.seed = seed
        self.epoch = 0
        self.report = MixtureReport()
        self.records: list[list[Record]] = []
        self.stores: list[CodeStore | None] = []
        self.items: list[tuple[int, int]] = []  # (source, record) per mixture position
        for s, source in enumerate(sources):
            lines = ReadReport()
            records = read_records(source.path, source.format, source.image_root, lines)
            self.report.left_out.update(lines.counts)
            store = CodeStore(source.codes) if source.codes else None
            if store is not None:
                records = self._with_codes(records, store, source)
            self.records.append(records)
            self.stores.append(store)
            chosen = _repeat(len(records), source.weight, np.random.default_rng([seed, s]))
            self.items += [(s, r) for r in chosen]
            self.report.per_source[source.name] = {"records": len(records), "per_epoch": len(chosen)}
        if not self.items:
            raise ValueError("the data mixture yields no usable sample")
        self._keys = [self._size_key(s, r) if group_by_size else (0, 0) for s, r in self.items]

    def _with_codes(self, records: list[Record], store: CodeStore, source: SourceConfig) -> list[Record]:
        kept = []
        for record in records:
            if record.line in store:
                kept.append(record)
            else:
                reason = store.dropped.get(record.line, "not_pretokenised")
                self.report.left_out[reason] += 1
                if reason == "not_pretokenised":
                    logger.warning("%s: not in %s (rerun pretokenize) (skipped)", record.where, source.codes)
        return kept

    def _size_key(self, s: int, r: int) -> tuple[int, int]:
        store = self.stores[s]
        return store.size(self.records[s][r].line) if store is not None else (0, 0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def sample_sizes(self) -> list[tuple[int, int]]:
        """Bucket key per item for `BucketBatchSampler`."""
        return self._keys

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> MixtureItem:
        s, r = self.items[index]
        record = self.records[s][r]
        store = self.stores[s]
        codes = store.get(record.line) if store is not None else None
        return MixtureItem(index, self.epoch, task_of(record), record, codes)


def _repeat(n: int, weight: float, rng: np.random.Generator) -> list[int]:
    """Record indices for one epoch: each `floor(weight)` times, plus a random `frac(weight)` share."""
    whole, frac = int(weight), weight - int(weight)
    chosen = list(range(n)) * whole
    extra = int(round(frac * n))
    if extra:
        chosen += sorted(rng.choice(n, size=extra, replace=False).tolist())
    return chosen


__all__ = ["SourceConfig", "MixtureDataset", "MixtureItem", "MixtureReport", "load_mixture", "task_of"]
