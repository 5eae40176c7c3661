"""Image data: procedural images, folder / JSON-lines datasets, size-bucketed batch sampling."""

from .datasets import (
    ImageDataConfig,
    ImageFolderDataset,
    ImageTransform,
    JsonlImageDataset,
    ProceduralImageDataset,
    build_dataset,
    collate_images,
    load_rgb,
    to_rgb,
)
from .procedural import render_procedural_image, write_procedural_images
from .sampler import BucketBatchSampler

__all__ = [
    "BucketBatchSampler", "ImageDataConfig", "ImageFolderDataset", "ImageTransform", "JsonlImageDataset",
    "ProceduralImageDataset", "build_dataset", "collate_images", "load_rgb", "to_rgb",
    "render_procedural_image", "write_procedural_images",
]
