"""From mixture items to a training batch.

Per sample (`encode`):
- conversation / text: ChatML with each `<image>` replaced by the image (continuous features,
  read at any resolution within the processor's bounds; with `image_codes`, the discrete-input
  ablation, its DualViTok codes instead); labels on assistant replies only;
- t2i: the training prompt and the target codes as the supervised reply (resolution tag
  included); with probability `cfg_dropout` (10%) the caption is dropped: the random-image
  prompt, same target;
- edit: the source image (continuous) + instruction, the target codes as the reply; with
  probability `cfg_dropout` the reconstruction prompt with the SOURCE codes as the target.
The dropout draw depends only on (seed, epoch, mixture index): the same on every process and
after a resume, whatever the batch order.

Length: a sequence longer than `max_length` is cut at `max_length` when the cut falls outside
every image frame (and supervised tokens remain); otherwise the sample is skipped. Skips are
counted by reason ("too_long", "unreadable_image", "no_supervised_tokens", ...), never raised.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from ...mllm.processor import EncodedSequence, IllumePlusProcessor, ImageCodes, MultimodalBatch
from .dataset import MixtureItem
from .records import IMAGE_TOKEN

logger = logging.getLogger(__name__)


@dataclass
class Skip:
    reason: str


@dataclass
class TrainingBatch:
    batch: MultimodalBatch | None  # None when every sample was skipped
    tasks: list[str]  # per row
    skipped: Counter = field(default_factory=Counter)

    @property
    def num_tokens(self) -> int:
        return 0 if self.batch is None else int(self.batch.attention_mask.sum())


class MllmCollator:
    def __init__(self, processor: IllumePlusProcessor, max_length: int = 4096, cfg_dropout: float = 0.1,
                 seed: int = 0, padding_side: str = "right", image_codes=None):
        if not 0 <= cfg_dropout <= 1:
            raise ValueError(f"cfg_dropout must lie in [0, 1], got {cfg_dropout}")
        self.processor = processor
        self.max_length = max_length
        self.cfg_dropout = cfg_dropout
        self.seed = seed
        self.padding_side = padding_side
        self.image_codes = image_codes  # image -> ImageCodes (e.g. `ImageCodeReader`), or None: continuous

    def __call__(self, items: list[MixtureItem]) -> TrainingBatch:
        sequences, tasks, skipped = [], [], Counter()
        for item in items:
            out = self.encode(item)
            if isinstance(out, Skip):
                skipped[out.reason] += 1
            else:
                sequences.append(out)
                tasks.append(item.task)
        batch = self.processor.collate(sequences, self.padding_side) if sequences else None
        return TrainingBatch(batch, tasks, skipped)

    # ------------------------------------------------------------------ one sample
    def drops_condition(self, item: MixtureItem) -> bool:
        return bool(np.random.default_rng([self.seed, item.epoch, item.index]).random() < self.cfg_dropout)

    def encode(self, item: MixtureItem) -> EncodedSequence | Skip:
        record = item.record
        try:
            images = [_load(path) for path in (record.images if record.kind in ("conversation", "edit") else [])]
        except Exception as e:  # noqa: BLE001 - any decoder failure: skip and count
            logger.warning("%s: unreadable image (%s: %s) (skipped)", record.where, type(e).__name__, e)
            return Skip("unreadable_image")
        try:
            seq = self._encode(item, images)
        except ValueError as e:  # e.g. an image too small for the processor
            logger.warning("%s: %s (skipped)", record.where, e)
            return Skip("bad_sample")
        return self._fit_length(seq, record.where)

    def _encode(self, item: MixtureItem, images: list) -> EncodedSequence:
        p, record = self.processor, item.record
        if record.kind in ("conversation", "text"):
            queue = [self.image_codes(im) for im in images] if self.image_codes else list(images)
            messages = [{"role": t["role"], "content": _split_images(t["content"], queue)} for t in record.turns]
            return p.encode_chat(messages, add_generation_prompt=False)
        entry = item.codes
        drop = self.drops_condition(item)
        if record.kind == "t2i":
            codes = ImageCodes(*entry.target, *entry.size)
            return p.encode_text_to_image(None if drop else record.text, entry.size, codes=codes)
        semantic, pixel = entry.source if drop else entry.target  # edit
        return p.encode_edit(images[0], None if drop else record.text, size=entry.size,
                             codes=ImageCodes(semantic, pixel, *entry.size))

    def _fit_length(self, seq: EncodedSequence, where: str) -> EncodedSequence | Skip:
        ignore = self.processor.config.ignore_index
        if len(seq) > self.max_length:
            cut = self.max_length
            if any(start < cut <= end for start, end in frame_spans(seq.input_ids, self.processor.layout)):
                logger.info("%s: %d tokens, and a cut at %d would split an image (skipped)", where, len(seq), cut)
                return Skip("too_long")
            seq = EncodedSequence(seq.input_ids[:cut], seq.labels[:cut],
                                  [img for img in seq.images if int(img.pixel_positions.max()) < cut],
                                  seq.target_size, seq.source_resize)
        if not bool((seq.labels[1:] != ignore).any()):
            return Skip("no_supervised_tokens")
        return seq


def frame_spans(ids: torch.Tensor, layout) -> list[tuple[int, int]]:
    """(start, end) of every image frame, end exclusive; a frame starts at its resolution tag
    when it has one."""
    tags = {t for _, t in layout.height_tags} | {t for _, t in layout.width_tags}
    starts = (ids == layout.start_of_image).nonzero().flatten().tolist()
    ends = (ids == layout.end_of_image).nonzero().flatten().tolist()
    spans = []
    for start in starts:
        end = next((e for e in ends if e > start), len(ids) - 1)
        while start > 0 and int(ids[start - 1]) in tags:
            start -= 1
        spans.append((start, end + 1))
    return spans


def _split_images(text: str, queue: list) -> list:
    """A turn's text with each `<image>` replaced by the next image."""
    pieces = text.split(IMAGE_TOKEN)
    parts = [pieces[0]]
    for piece in pieces[1:]:
        parts += [queue.pop(0), piece]
    return [part for part in parts if not isinstance(part, str) or part]


def _load(path: str):
    from ...utils.images import load_image

    return load_image(path)


__all__ = ["MllmCollator", "TrainingBatch", "Skip", "frame_spans"]
