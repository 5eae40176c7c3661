"""Image datasets for tokenizer training and evaluation.

Three sources share one transform and one contract:
- `ImageFolderDataset`: every image file under a directory (recursive, sorted).
- `JsonlImageDataset`: a list file with one JSON object per line, `{"image": "path"}`
  (relative paths are resolved against the list file's directory or `image_root`).
  A malformed line is an error raised when the list is read, naming the file and line number:
  a broken list is a data bug to fix before training, not noise to skip.
- `ProceduralImageDataset`: rendered images (see `procedural.py`), no files at all.

Images of any mode (L, LA, RGBA, P, CMYK, 1, 16-bit "I;16", 32-bit "I", float "F") become
8-bit RGB; transparency is composited on white. Each item is `{"image": (3, H, W) float in
[-1, 1], "index": int}`.

Unreadable or corrupt files never stop an epoch: `__getitem__` returns None for them, and
`collate_images` drops the None items and reports how many it dropped in `num_skipped`
(this works with DataLoader workers, where a counter on the dataset object would not).
Files whose header cannot even be read are found when sizes are scanned (`sample_sizes`),
left out of every batch, and counted in `num_unreadable`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..tokenizer.preprocess import smart_resize
from ..utils.images import READ_ERRORS, load_image, to_rgb  # noqa: F401  (to_rgb: re-exported)
from .procedural import procedural_size, render_procedural_image

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
_EXIF_ORIENTATION = 0x0112
_HEADER_EXIF_FORMATS = ("JPEG", "MPO", "WEBP", "TIFF")


# ----------------------------------------------------------------------------- decoding
def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode an image file fully (so truncation errors surface here) and return it upright as
    RGB: the package's one image loader, `illume_plus.utils.images.load_image`."""
    return load_image(path)


def _header_orientation(image: Image.Image) -> int | None:
    # JPEG, WebP and TIFF keep EXIF in the header; a PNG may keep it after the pixel data, where
    # reading it would cost a full decode, so only a PNG eXIf chunk seen in the header counts.
    if image.format in _HEADER_EXIF_FORMATS or "exif" in image.info:
        return image.getexif().get(_EXIF_ORIENTATION)
    return None


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of the upright image, from the header only."""
    with Image.open(path) as image:
        width, height = image.size
        if _header_orientation(image) in (5, 6, 7, 8):
            width, height = height, width  # rotated by 90 degrees
    return height, width


# ----------------------------------------------------------------------------- transform
@dataclass
class ImageTransform:
    """Resize policy shared by training and evaluation.

    mode "fixed":  resize the short side to `size`, then center-crop to size x size.
    mode "anyres": keep the aspect ratio; `smart_resize` picks H, W (multiples of `factor`)
                   with min_pixels <= H*W <= max_pixels. Nothing is cropped.
    """

    mode: str = "fixed"
    size: int = 256
    min_pixels: int = 32 * 32
    max_pixels: int = 512 * 512
    factor: int = 16

    def __post_init__(self):
        if self.mode not in ("fixed", "anyres"):
            raise ValueError(f"resize mode must be 'fixed' or 'anyres', got {self.mode!r}")
        if self.mode == "fixed" and (self.size <= 0 or self.size % self.factor):
            raise ValueError(f"fixed size must be a positive multiple of {self.factor}, got {self.size}")

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        if self.mode == "fixed":
            return self.size, self.size
        return smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)

    def __call__(self, image: Image.Image, flip: bool = False) -> torch.Tensor:
        """PIL RGB image -> (3, H, W) float tensor in [-1, 1]."""
        width, height = image.size
        if self.mode == "fixed":
            scale = self.size / min(height, width)
            new_h, new_w = max(self.size, round(height * scale)), max(self.size, round(width * scale))
            image = image.resize((new_w, new_h), Image.BICUBIC)
            top, left = (new_h - self.size) // 2, (new_w - self.size) // 2
            image = image.crop((left, top, left + self.size, top + self.size))
        else:
            new_h, new_w = self.target_size(height, width)
            if (new_h, new_w) != (height, width):
                image = image.resize((new_w, new_h), Image.BICUBIC)
        if flip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        array = np.asarray(image, dtype=np.uint8).copy()
        tensor = torch.from_numpy(array).permute(2, 0, 1).float()
        return tensor / 127.5 - 1.0


# ----------------------------------------------------------------------------- datasets
class _ImageDataset(Dataset):
    """Shared item logic: decode, transform, deterministic flip, None on unreadable files."""

    def __init__(self, transform: ImageTransform, hflip_probability: float = 0.0, seed: int = 0):
        if not 0.0 <= hflip_probability <= 1.0:
            raise ValueError(f"hflip_probability must lie in [0, 1], got {hflip_probability}")
        self.transform = transform
        self.hflip_probability = hflip_probability
        self.seed = seed
        self.epoch = 0
        self.num_unreadable = 0  # files whose header failed in sample_sizes()
        self._sizes: list[tuple[int, int] | None] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Flips depend on (seed, epoch, index) only, so a resumed epoch flips the same images."""
        self.epoch = epoch

    def _flip(self, index: int) -> bool:
        if self.hflip_probability == 0.0:
            return False
        return bool(np.random.default_rng([self.seed, self.epoch, index]).random() < self.hflip_probability)

    # subclasses provide these two
    def _load(self, index: int) -> Image.Image:
        raise NotImplementedError

    def _source_size(self, index: int) -> tuple[int, int]:
        raise NotImplementedError

    def _describe(self, index: int) -> str:
        return f"item {index}"

    def describe_source(self) -> str:
        """Where the items come from, for error messages (a folder, a list file...)."""
        return type(self).__name__

    def sample_sizes(self) -> list[tuple[int, int] | None]:
        """Output (H, W) of every item (None for an unreadable file), for bucketing by size.
        Fixed mode needs no file access; anyres reads each header once and caches the result."""
        if self._sizes is None:
            if self.transform.mode == "fixed":
                self._sizes = [(self.transform.size, self.transform.size)] * len(self)
            else:
                sizes = []
                for i in range(len(self)):
                    try:
                        sizes.append(self.transform.target_size(*self._source_size(i)))
                    except READ_ERRORS as e:
                        logger.warning("skipping unreadable image %s: %s", self._describe(i), e)
                        sizes.append(None)
                self.num_unreadable = sum(s is None for s in sizes)
                self._sizes = sizes
        return self._sizes

    def __getitem__(self, index: int) -> dict | None:
        try:
            image = self._load(index)
            tensor = self.transform(image, flip=self._flip(index))
        except READ_ERRORS as e:
            logger.warning("skipping unreadable image %s: %s", self._describe(index), e)
            return None
        expected = self._sizes[index] if self._sizes is not None else None
        if expected is not None and tuple(tensor.shape[-2:]) != tuple(expected):
            # the header promised another size (an orientation tag only a full decode finds):
            # the item would break its size bucket, so it is skipped like an unreadable one
            logger.warning("skipping image %s: decoded size %s differs from its header's %s",
                           self._describe(index), tuple(tensor.shape[-2:]), tuple(expected))
            return None
        return {"image": tensor, "index": index}


class _FileImageDataset(_ImageDataset):
    """Items are image files, `self.paths` (set by the subclass)."""

    paths: list[Path]

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index):
        return load_rgb(self.paths[index])

    def _source_size(self, index):
        return read_image_size(self.paths[index])

    def _describe(self, index):
        return str(self.paths[index])


class ImageFolderDataset(_FileImageDataset):
    """Every file with an image extension under `root` (recursive, sorted by path)."""

    def __init__(self, root: str | os.PathLike, transform: ImageTransform, hflip_probability: float = 0.0,
                 seed: int = 0, extensions: Sequence[str] = IMAGE_EXTENSIONS):
        super().__init__(transform, hflip_probability, seed)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        extensions = tuple(e.lower() for e in extensions)
        self.paths = sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
        if not self.paths:
            raise ValueError(f"no image files ({', '.join(extensions)}) under {self.root}")

    def describe_source(self) -> str:
        return f"image folder {self.root}"


class JsonlImageDataset(_FileImageDataset):
    """Images listed in a JSON-lines file, one `{"image": "path", ...}` object per line.
    Blank lines are ignored; any other malformed line raises ValueError naming file:line."""

    def __init__(self, list_path: str | os.PathLike, transform: ImageTransform, hflip_probability: float = 0.0,
                 seed: int = 0, image_root: str | os.PathLike | None = None, key: str = "image"):
        super().__init__(transform, hflip_probability, seed)
        self.list_path = Path(list_path)
        if not self.list_path.is_file():
            raise FileNotFoundError(f"image list not found: {self.list_path}")
        root = Path(image_root) if image_root is not None else self.list_path.parent
        self.paths = []
        with open(self.list_path, encoding="utf-8") as f:
            for line_number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                where = f"{self.list_path}:{line_number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{where}: not valid JSON ({e.msg})") from None
                if not isinstance(record, dict) or not isinstance(record.get(key), str) or not record[key]:
                    raise ValueError(f"{where}: expected an object with a non-empty string {key!r}, got {line.strip()[:200]}")
                path = Path(record[key])
                self.paths.append(path if path.is_absolute() else root / path)
        if not self.paths:
            raise ValueError(f"image list {self.list_path} has no entries")

    def describe_source(self) -> str:
        return f"image list {self.list_path}"


class ProceduralImageDataset(_ImageDataset):
    """`num_images` procedural images; image i is rendered from seed `image_seed + i` at a size
    drawn (deterministically) from `source_sizes`, then passed through `transform`."""

    def __init__(self, num_images: int, transform: ImageTransform, source_sizes: Sequence[Sequence[int]] = ((256, 256),),
                 image_seed: int = 0, hflip_probability: float = 0.0, seed: int = 0):
        super().__init__(transform, hflip_probability, seed)
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        self.num_images = num_images
        self.source_sizes = [tuple(int(v) for v in s) for s in source_sizes]
        if not self.source_sizes or any(len(s) != 2 or min(s) < 1 for s in self.source_sizes):
            raise ValueError(f"source_sizes must be a list of positive (H, W) pairs, got {source_sizes}")
        self.image_seed = image_seed

    def __len__(self) -> int:
        return self.num_images

    def _load(self, index):
        h, w = self._source_size(index)
        return render_procedural_image(self.image_seed + index, h, w)

    def _source_size(self, index):
        return procedural_size(self.image_seed + index, self.source_sizes)


# ----------------------------------------------------------------------------- batching
def collate_images(items: list[dict | None]) -> dict:
    """Stack same-size items; drop None (unreadable) items and count them in `num_skipped`.
    `images` is None when every item of the batch was unreadable."""
    kept = [item for item in items if item is not None]
    sizes = {tuple(item["image"].shape[-2:]) for item in kept}
    if len(sizes) > 1:
        raise ValueError(f"a batch mixes image sizes {sorted(sizes)}; batch with BucketBatchSampler")
    return {
        "images": torch.stack([item["image"] for item in kept]) if kept else None,
        "indices": torch.tensor([item["index"] for item in kept], dtype=torch.long),
        "num_skipped": len(items) - len(kept),
    }


# ----------------------------------------------------------------------------- config
@dataclass
class ImageDataConfig:
    """Where images come from and how they are sized (one YAML section in the recipes)."""

    source: str = "procedural"  # "procedural" | "folder" | "jsonl"
    path: str | None = None  # folder or list file for "folder" / "jsonl"
    image_root: str | None = None  # "jsonl" only: base of relative paths (default: the list's folder)
    resize: str = "fixed"  # "fixed" (center crop to size x size) | "anyres" (smart resize)
    size: int = 256
    min_pixels: int = 32 * 32
    max_pixels: int = 512 * 512
    hflip_probability: float = 0.0
    # procedural source only
    num_images: int = 1024
    image_seed: int = 0
    source_sizes: list | None = None  # [[H, W], ...] rendered sizes; default [[size, size]]

    def transform(self) -> ImageTransform:
        return ImageTransform(mode=self.resize, size=self.size, min_pixels=self.min_pixels, max_pixels=self.max_pixels)


def build_dataset(config: ImageDataConfig, seed: int = 0, transform: ImageTransform | None = None) -> _ImageDataset:
    """The dataset `config.source` names. `transform` (default: the config's) sizes each image; any
    object with `mode`, `target_size(h, w)` and `__call__(image, flip)` will do."""
    transform = config.transform() if transform is None else transform
    if config.source == "procedural":
        sizes = config.source_sizes or [[config.size, config.size]]
        return ProceduralImageDataset(config.num_images, transform, sizes, config.image_seed,
                                      config.hflip_probability, seed)
    if config.source in ("folder", "jsonl") and not config.path:
        raise ValueError(f"data source {config.source!r} needs data.path")
    if config.source == "folder":
        return ImageFolderDataset(config.path, transform, config.hflip_probability, seed)
    if config.source == "jsonl":
        return JsonlImageDataset(config.path, transform, config.hflip_probability, seed, config.image_root)
    raise ValueError(f"unknown data source {config.source!r}; choose 'procedural', 'folder' or 'jsonl'")
