"""Generation and editing targets as DualViTok code grids, tokenised once, offline.

    illume-plus pretokenize t2i.jsonl --format t2i --tokenizer DUALVITOK_DIR --out codes/t2i
    torchrun --nproc_per_node 8 -m illume_plus.data.mllm.codes edit.jsonl --format edit ...

Each image is brought to the nearest (in aspect ratio) of the allowed sizes (default: the 11
generation sizes) by covering it and centre-cropping ("anchor centre-crop"); an image that would
lose more than `max_crop` (20%) of its area is dropped and counted. Editing records tokenise the
source and the target at the target's size (the source codes are the reconstruction target of
condition dropout).

Output folder: the records are cut into chunks of `chunk_size` lines; chunk c is processed by
process c % world_size and written as `chunk_{c:06d}.safetensors` (per size "HxW/": stacked
`target_semantic` (N, h1, w1), `target_pixel` (N, h2, w2), for edits `source_semantic` and
`source_pixel`, and `lines` (N,), the records' line numbers) followed by `chunk_{c:06d}.json`
(what was kept, dropped, unreadable). The json is written last and atomically: it marks the
chunk done, so a rerun (with any number of processes) skips finished chunks (resumable).
`summary.json` totals every finished chunk.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from ...utils.io import atomic_path, save_json, save_safetensors
from .records import ReadReport, Record, read_records

logger = logging.getLogger(__name__)

SUMMARY_NAME = "summary.json"


# ----------------------------------------------------------------------------- sizes
def nearest_size(height: int, width: int, sizes) -> tuple[int, int]:
    """The allowed size nearest in aspect ratio (the package's anchor rule, as at inference)."""
    from ...mllm.images import nearest_anchor

    return nearest_anchor(height, width, [tuple(s) for s in sizes])


def crop_loss(height: int, width: int, size: tuple[int, int]) -> float:
    """Fraction of the image's area that covering `size` and centre-cropping throws away."""
    scale = max(size[0] / height, size[1] / width)
    return 1.0 - (size[0] * size[1]) / (height * scale * width * scale)


def anchor_crop(image, size: tuple[int, int]) -> torch.Tensor:
    """PIL image (or (3, H, W) in [-1, 1]) -> (3, *size) in [-1, 1]: cover `size`, centre crop
    (the processor's "crop" fit, which also brings an editing source to its size in training)."""
    from ...mllm.images import fit_to_anchor

    return fit_to_anchor(image, tuple(size), "crop")[0]


def size_key(size) -> str:
    return f"{size[0]}x{size[1]}"


# ----------------------------------------------------------------------------- reading
@dataclass
class CodeEntry:
    size: tuple[int, int]
    target: tuple[torch.Tensor, torch.Tensor]  # semantic (h1, w1), pixel (h2, w2)
    source: tuple[torch.Tensor, torch.Tensor] | None  # editing records only


class CodeStore:
    """Read access to a pretokenised folder: codes by record line number."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"no pretokenised codes at {self.directory} (run `illume-plus pretokenize`)")
        self._where: dict[int, tuple[str, str, int]] = {}  # line -> (chunk file, size key, row)
        self.dropped: dict[int, str] = {}  # line -> reason ("crop_over_limit", "unreadable_image")
        for done in sorted(self.directory.glob("chunk_*.json")):
            info = json.loads(done.read_text())
            for key, lines in info["kept"].items():
                for row, line in enumerate(lines):
                    self._where[line] = (done.with_suffix(".safetensors").name, key, row)
            for reason in ("crop_over_limit", "unreadable_image"):
                self.dropped.update({line: reason for line in info[reason]})
        if not self._where and not self.dropped:
            raise ValueError(f"{self.directory} holds no finished chunk (run `illume-plus pretokenize`)")
        self._files: dict[str, object] = {}

    def __contains__(self, line: int) -> bool:
        return line in self._where

    def size(self, line: int) -> tuple[int, int]:
        h, w = self._where[line][1].split("x")
        return int(h), int(w)

    def get(self, line: int) -> CodeEntry:
        name, key, row = self._where[line]
        f = self._files.get(name)
        if f is None:
            f = self._files[name] = safe_open(str(self.directory / name), framework="pt")
        keys = set(f.keys())

        def grid(part):
            return f.get_slice(f"{key}/{part}")[row].long()

        source = (grid("source_semantic"), grid("source_pixel")) if f"{key}/source_semantic" in keys else None
        return CodeEntry(self.size(line), (grid("target_semantic"), grid("target_pixel")), source)

    def __getstate__(self):  # DataLoader workers reopen their own handles
        return {**self.__dict__, "_files": {}}


# ----------------------------------------------------------------------------- writing
def _load_image(path: str):
    from ...utils.images import load_image

    return load_image(path)


def _encode(tokenizer, images: list[torch.Tensor], batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    semantic, pixel = [], []
    device = next(tokenizer.parameters()).device
    for start in range(0, len(images), batch_size):
        batch = torch.stack(images[start:start + batch_size]).to(device)
        enc = tokenizer.encode(batch)
        semantic.append(enc.semantic_ids.to(torch.int32).cpu())
        pixel.append(enc.pixel_ids.to(torch.int32).cpu())
    return torch.cat(semantic), torch.cat(pixel)


@torch.no_grad()
def tokenize_chunk(records: list[Record], tokenizer, sizes, max_crop: float, batch_size: int) -> tuple[dict, dict]:
    """Code grids of one chunk's records, grouped by size -> (tensors, info)."""
    groups: dict[tuple, list] = defaultdict(list)  # size -> [(line, [target, source?])]
    info = {"kept": {}, "crop_over_limit": [], "unreadable_image": []}
    for record in records:
        paths = record.images[::-1] if record.kind == "edit" else record.images[:1]  # target first
        try:
            pictures = [_load_image(p) for p in paths]
        except Exception as e:  # noqa: BLE001 - any decoder failure is "unreadable", counted
            logger.warning("%s: unreadable image (%s: %s) (skipped)", record.where, type(e).__name__, e)
            info["unreadable_image"].append(record.line)
            continue
        size = nearest_size(pictures[0].height, pictures[0].width, sizes)
        if max(crop_loss(p.height, p.width, size) for p in pictures) > max_crop:
            info["crop_over_limit"].append(record.line)
            continue
        groups[size].append((record.line, [anchor_crop(p, size) for p in pictures]))
    tensors = {}
    for size, items in sorted(groups.items()):
        key = size_key(size)
        info["kept"][key] = [line for line, _ in items]
        tensors[f"{key}/lines"] = torch.tensor(info["kept"][key], dtype=torch.int64)
        for i, part in enumerate(("target", "source")[:len(items[0][1])]):
            semantic, pixel = _encode(tokenizer, [pics[i] for _, pics in items], batch_size)
            tensors[f"{key}/{part}_semantic"], tensors[f"{key}/{part}_pixel"] = semantic, pixel
    return tensors, info


class ImageCodeReader:
    """Images -> `ImageCodes` through a DualViTok: a user image read as code tokens (a discrete
    frame) instead of continuous features, the discrete-input baseline of the paper's Table 6.
    The image is sized as the processor sizes understanding images, then encoded."""

    def __init__(self, tokenizer, processor):
        self.tokenizer = tokenizer.eval()
        self.processor = processor

    @torch.no_grad()
    def __call__(self, image):
        from ...mllm.processor import ImageCodes

        pixels = self.processor.prepare_understanding_image(image)
        enc = self.tokenizer.encode(pixels[None].to(self.tokenizer.pixel_quant_conv.weight.dtype))
        return ImageCodes(enc.semantic_ids[0], enc.pixel_ids[0], *pixels.shape[-2:], resolution_tag=False)


def pretokenize(list_path, kind: str, out_dir, tokenizer, sizes, max_crop: float = 0.2, chunk_size: int = 256,
                batch_size: int = 16, rank: int = 0, world_size: int = 1, image_root=None,
                progress_bar: bool = True) -> dict:
    """Tokenise this process's unfinished chunks; returns the summary of every finished chunk."""
    from tqdm.auto import tqdm

    if kind not in ("t2i", "edit"):
        raise ValueError(f"only t2i and edit targets are pretokenised, not {kind!r}")
    if not 0 <= max_crop < 1:
        raise ValueError(f"max_crop must lie in [0, 1), got {max_crop}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ReadReport()
    records = read_records(list_path, kind, image_root, report)
    chunks = [records[i:i + chunk_size] for i in range(0, len(records), chunk_size)]
    mine = [c for c in range(len(chunks)) if c % world_size == rank
            and not (out_dir / f"chunk_{c:06d}.json").is_file()]
    tokenizer.eval()
    bar = tqdm(total=sum(len(chunks[c]) for c in mine), desc=f"pretokenize [{rank}]", disable=not progress_bar)
    for c in mine:
        tensors, info = tokenize_chunk(chunks[c], tokenizer, sizes, max_crop, batch_size)
        if tensors:
            save_safetensors(tensors, out_dir / f"chunk_{c:06d}.safetensors")
        with atomic_path(out_dir / f"chunk_{c:06d}.json") as tmp:  # last: marks the chunk done
            tmp.write_text(json.dumps(info))
        bar.update(len(chunks[c]))
    bar.close()
    return write_summary(out_dir, len(chunks), report)


def write_summary(out_dir: Path, num_chunks: int, report: ReadReport) -> dict:
    done = sorted(out_dir.glob("chunk_*.json"))
    per_size: dict[str, int] = defaultdict(int)
    dropped = unreadable = 0
    for path in done:
        info = json.loads(path.read_text())
        for key, lines in info["kept"].items():
            per_size[key] += len(lines)
        dropped += len(info["crop_over_limit"])
        unreadable += len(info["unreadable_image"])
    summary = {"complete": len(done) == num_chunks, "chunks_done": len(done), "chunks": num_chunks,
               "kept": sum(per_size.values()), "kept_per_size": dict(sorted(per_size.items())),
               "dropped_crop_over_limit": dropped, "unreadable_image": unreadable,
               "bad_lines": dict(report.counts)}
    if summary["complete"]:
        save_json(summary, out_dir / SUMMARY_NAME)
    return summary


# ----------------------------------------------------------------------------- CLI
def _parse_sizes(text: str) -> list[tuple[int, int]]:
    try:
        return [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",") if item]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must look like 512x512,384x512, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="illume-plus pretokenize", description=__doc__.split("\n\n")[0])
    p.add_argument("list", help="t2i or edit JSON-lines file")
    p.add_argument("--format", required=True, choices=("t2i", "edit"))
    p.add_argument("--out", required=True, help="output folder (reruns resume)")
    p.add_argument("--tokenizer", required=True, help="DualViTok save_pretrained folder")
    p.add_argument("--sizes", type=_parse_sizes, default=None,
                   help="allowed HxW sizes, comma separated (default: the 11 generation sizes)")
    p.add_argument("--max-crop", type=float, default=0.2, help="drop images losing more than this area fraction")
    p.add_argument("--chunk-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-root", default=None)
    p.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK when available, else cpu")
    args = p.parse_args(argv)

    from ...mllm.config import GENERATION_SIZES
    from ...tokenizer.model import DualViTok

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = args.device or (f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu")
    tokenizer = DualViTok.from_pretrained(args.tokenizer).to(device)
    summary = pretokenize(args.list, args.format, args.out, tokenizer, args.sizes or GENERATION_SIZES,
                          args.max_crop, args.chunk_size, args.batch_size, rank, world, args.image_root)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
