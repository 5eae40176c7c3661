"""Evaluation of the tokenizer: the FID Inception network and reconstruction metrics."""

from .inception import InceptionOutput, InceptionV3
from .metrics import (
    PSNR,
    SSIM,
    CodebookUsage,
    FrechetDistance,
    frechet_distance,
    inception_score,
    psnr,
    ssim,
)

__all__ = [
    "CodebookUsage",
    "FrechetDistance",
    "InceptionOutput",
    "InceptionV3",
    "PSNR",
    "SSIM",
    "frechet_distance",
    "inception_score",
    "psnr",
    "ssim",
]
