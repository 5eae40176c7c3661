"""Reconstruction metrics of the tokenizer: PSNR, SSIM, FID (with Inception Score), codebook use.

Conventions
- PSNR and SSIM take images in [0, 1] with data_range 1. (The authors' release computed SSIM
  with data_range 2 on [0, 1] images, which inflates it; inputs outside [0, 1] are refused here.)
  Both are computed per image and averaged over images.
- Metric classes are `torchmetrics.Metric`s whose states are sums (`dist_reduce_fx="sum"`):
  they accumulate across batches, `compute()` all-reduces them under torch.distributed, and
  `merge_state(other)` combines instances by hand.
- FID statistics are accumulated in float64 as sums of features and of their outer products,
  so that per-process sums add up exactly to the statistics of the union.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

DATA_RANGE = 1.0  # images are in [0, 1]
RANGE_TOLERANCE = 1e-3


def _check_images(preds: torch.Tensor, target: torch.Tensor) -> None:
    if preds.shape != target.shape or preds.dim() != 4:
        raise ValueError(f"expected two (B, C, H, W) image batches of one shape, got {tuple(preds.shape)} "
                         f"and {tuple(target.shape)}")
    for name, images in (("preds", preds), ("target", target)):
        low, high = images.min().item(), images.max().item()
        if low < -RANGE_TOLERANCE or high > DATA_RANGE + RANGE_TOLERANCE:
            raise ValueError(f"{name} must be images in [0, 1] (data_range {DATA_RANGE}), got values in "
                             f"[{low:.3f}, {high:.3f}]; map [-1, 1] images with (x + 1) / 2 and clamp")


def psnr(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB, (B,), of images in [0, 1]."""
    _check_images(preds, target)
    return peak_signal_noise_ratio(preds.double(), target.double(), data_range=DATA_RANGE,
                                   reduction="none", dim=(1, 2, 3))


def ssim(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM, (B,), of images in [0, 1] (Gaussian window 11, sigma 1.5, k1 0.01, k2 0.03)."""
    _check_images(preds, target)
    return structural_similarity_index_measure(preds.double(), target.double(), data_range=DATA_RANGE,
                                               reduction="none")


class _MeanOverImages(Metric):
    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    @staticmethod
    def per_image(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        values = self.per_image(preds, target)
        self.total += values.double().sum()
        self.count += values.numel()

    def compute(self) -> torch.Tensor:
        if self.count == 0:
            raise RuntimeError(f"{type(self).__name__}.compute() called before any update")
        return self.total / self.count


class PSNR(_MeanOverImages):
    """Mean per-image PSNR over all updates."""

    per_image = staticmethod(psnr)


class SSIM(_MeanOverImages):
    """Mean per-image SSIM over all updates."""

    per_image = staticmethod(ssim)


class FrechetDistance(Metric):
    """FID between the 'real' and 'fake' feature sets given to `update(features, real=...)`.

    Features are (N, D) vectors, e.g. `InceptionV3(...)(images).features`.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, feature_dim: int = 2048, **kwargs):
        super().__init__(**kwargs)
        self.feature_dim = feature_dim
        for side in ("real", "fake"):
            self.add_state(f"{side}_sum", torch.zeros(feature_dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer_sum", torch.zeros(feature_dim, feature_dim, dtype=torch.float64),
                           dist_reduce_fx="sum")
            self.add_state(f"{side}_count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, features: torch.Tensor, real: bool) -> None:
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(f"expected features (N, {self.feature_dim}), got {tuple(features.shape)}")
        side = "real" if real else "fake"
        x = features.detach().double()
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + x.sum(dim=0))
        setattr(self, f"{side}_outer_sum", getattr(self, f"{side}_outer_sum") + x.t() @ x)
        setattr(self, f"{side}_count", getattr(self, f"{side}_count") + x.shape[0])

    def statistics(self, real: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (D,) and unbiased covariance (D, D), float64, of one side."""
        side = "real" if real else "fake"
        n = int(getattr(self, f"{side}_count"))
        if n < 2:
            raise RuntimeError(f"FID needs at least 2 {side} samples, got {n}")
        mean = getattr(self, f"{side}_sum") / n
        cov = (getattr(self, f"{side}_outer_sum") - n * torch.outer(mean, mean)) / (n - 1)
        return mean, cov

    def compute(self) -> torch.Tensor:
        mu_real, sigma_real = self.statistics(real=True)
        mu_fake, sigma_fake = self.statistics(real=False)
        return torch.tensor(frechet_distance(mu_real, sigma_real, mu_fake, sigma_fake), dtype=torch.float64)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)), in float64.

    As in the reference FID code: when the square root is not finite (singular product), add
    eps * I to both covariances; drop an imaginary part that numerical error leaves, but refuse
    one that is large.
    """
    from scipy import linalg  # the standard FID square root; imported only when FID is used

    mu1, mu2 = _as_float64(mu1), _as_float64(mu2)
    sigma1, sigma2 = _as_float64(sigma1), _as_float64(sigma2)
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"expected means (D,) and covariances (D, D), got {mu1.shape}, {sigma1.shape}, "
                         f"{mu2.shape}, {sigma2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(d) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        largest_imaginary = np.max(np.abs(np.diagonal(covmean).imag))
        if largest_imaginary > 1e-3:
            raise ValueError(f"matrix square root has an imaginary component of {largest_imaginary:.3g}: "
                             "covariances are ill-conditioned (too few samples for the feature size?)")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def _as_float64(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def inception_score(logits: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """Inception Score exp(E_x KL(p(y|x) || p(y))) over `splits` consecutive parts: (mean, std).

    `logits`: (N, classes), e.g. `InceptionV3(...)(images).logits_unbiased` (all 1008 classes).
    """
    if logits.dim() != 2 or logits.shape[0] < splits:
        raise ValueError(f"expected logits (N, classes) with N >= splits={splits}, got {tuple(logits.shape)}")
    log_p = torch.log_softmax(logits.detach().double(), dim=1)
    p = log_p.exp()
    n = p.shape[0]
    scores = []
    for i in range(splits):
        part_p, part_log_p = p[i * n // splits:(i + 1) * n // splits], log_p[i * n // splits:(i + 1) * n // splits]
        log_marginal = part_p.mean(dim=0, keepdim=True).log()
        kl = torch.where(part_p > 0, part_p * (part_log_p - log_marginal), 0.0).sum(dim=1)
        scores.append(math.exp(kl.mean().item()))
    return float(np.mean(scores)), float(np.std(scores))


class CodebookUsage(Metric):
    """How many codes of a codebook are used, from code indices of any shape.

    compute() -> {"usage": fraction of codes used at least once, "used_codes": their number,
    "perplexity": exp(entropy of the code frequencies)} (perplexity = K for uniform use).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, codebook_size: int, **kwargs):
        super().__init__(**kwargs)
        if codebook_size < 1:
            raise ValueError(f"codebook_size must be >= 1, got {codebook_size}")
        self.codebook_size = codebook_size
        self.add_state("counts", torch.zeros(codebook_size, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, indices: torch.Tensor) -> None:
        if indices.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"code indices must be integers, got {indices.dtype}")
        flat = indices.reshape(-1).long()
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.codebook_size):
            raise ValueError(f"code indices must lie in [0, {self.codebook_size}), got "
                             f"[{int(flat.min())}, {int(flat.max())}]")
        self.counts += torch.bincount(flat, minlength=self.codebook_size)

    def compute(self) -> dict[str, torch.Tensor]:
        total = self.counts.sum()
        if total == 0:
            raise RuntimeError("CodebookUsage.compute() called before any update")
        used = (self.counts > 0).sum()
        p = self.counts.double() / total
        entropy = -torch.where(p > 0, p * p.log(), 0.0).sum()
        return {"usage": used.double() / self.codebook_size, "used_codes": used, "perplexity": entropy.exp()}
