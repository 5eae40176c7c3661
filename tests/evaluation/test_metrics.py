import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

from illume_plus.evaluation import (
    PSNR,
    SSIM,
    CodebookUsage,
    FrechetDistance,
    frechet_distance,
    inception_score,
    psnr,
    ssim,
)


def test_psnr_of_known_mse():
    target = torch.zeros(2, 3, 8, 8)
    preds = torch.stack([torch.full((3, 8, 8), 0.1), torch.full((3, 8, 8), 0.01)])  # MSE 1e-2 and 1e-4
    torch.testing.assert_close(psnr(preds, target), torch.tensor([20.0, 40.0], dtype=torch.float64))
    metric = PSNR()
    metric.update(preds[:1], target[:1])
    metric.update(preds[1:], target[1:])
    assert metric.compute().item() == pytest.approx(30.0)  # mean over images, not PSNR of the pooled MSE


def test_ssim_identical_is_one_and_data_range_is_one():
    x = 0.4 + 0.1 * torch.rand(2, 3, 32, 32)  # low contrast: where the data range matters most
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    torch.testing.assert_close(ssim(x, x), torch.ones(2, dtype=torch.float64))
    value = ssim(x, y)
    # SSIM with data_range L on images scaled by L is the same number: check against 0..255.
    torch.testing.assert_close(value, tm_ssim(255 * x.double(), 255 * y.double(), data_range=255.0, reduction="none"))
    # The authors' data_range=2 on [0, 1] images inflates SSIM: ours must not equal it.
    pitfall = tm_ssim(x.double(), y.double(), data_range=2.0, reduction="none")
    assert (pitfall > value + 0.1).all()
    metric = SSIM()
    metric.update(x, y)
    assert metric.compute().item() == pytest.approx(value.mean().item())


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_images_in_minus_one_one_are_refused(metric):
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metric(x, x)


def test_frechet_distance_analytic_gaussians():
    d = 6
    mu = torch.arange(d, dtype=torch.float64) / 3
    eye = torch.eye(d, dtype=torch.float64)
    # N(0, I) vs N(mu, I): ||mu||^2.
    assert frechet_distance(torch.zeros(d), eye, mu, eye) == pytest.approx((mu @ mu).item(), rel=1e-10)
    # Covariances sharing eigenvectors Q: trace term sum_i (sqrt(a_i) - sqrt(b_i))^2.
    q, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64))
    a, b = torch.rand(d, dtype=torch.float64) + 0.1, torch.rand(d, dtype=torch.float64) + 0.1
    sigma_a, sigma_b = q @ torch.diag(a) @ q.T, q @ torch.diag(b) @ q.T
    expected = (mu @ mu + ((a.sqrt() - b.sqrt()) ** 2).sum()).item()
    assert frechet_distance(mu, sigma_a, torch.zeros(d), sigma_b) == pytest.approx(expected, rel=1e-8)


def test_fid_metric_on_constructed_feature_sets():
    d = 8
    x = torch.randn(300, d, dtype=torch.float64) @ torch.randn(d, d, dtype=torch.float64) + 1.0
    mean_x, cov_x = x.numpy().mean(axis=0), np.cov(x.numpy(), rowvar=False)

    def fid(real, fake, batch=64):
        metric = FrechetDistance(feature_dim=d)
        for i in range(0, len(real), batch):
            metric.update(real[i:i + batch], real=True)
        for i in range(0, len(fake), batch):
            metric.update(fake[i:i + batch], real=False)
        return metric

    identical = fid(x, x)
    assert abs(identical.compute().item()) < 1e-8
    mu_stream, cov_stream = identical.statistics(real=True)
    np.testing.assert_allclose(mu_stream.numpy(), mean_x, rtol=1e-12)
    np.testing.assert_allclose(cov_stream.numpy(), cov_x, rtol=1e-10, atol=1e-12)
    shift = torch.linspace(-1, 1, d, dtype=torch.float64)
    assert fid(x, x + shift).compute().item() == pytest.approx((shift @ shift).item(), rel=1e-8)
    # Y = 2X: ||mu||^2 + tr(S) + 4 tr(S) - 2 tr(2 S) = ||mu||^2 + tr(S).
    assert fid(x, 2 * x).compute().item() == pytest.approx(mean_x @ mean_x + np.trace(cov_x), rel=1e-8)


def test_fid_states_merge_like_a_distributed_gather():
    d = 5
    real, fake = torch.randn(100, d), torch.randn(80, d) + 0.5
    whole = FrechetDistance(feature_dim=d)
    whole.update(real, real=True)
    whole.update(fake, real=False)
    part_a, part_b = FrechetDistance(feature_dim=d), FrechetDistance(feature_dim=d)
    part_a.update(real[:30], real=True)
    part_a.update(fake[:50], real=False)
    part_b.update(real[30:], real=True)
    part_b.update(fake[50:], real=False)
    part_a.merge_state(part_b)
    assert part_a.compute().item() == pytest.approx(whole.compute().item(), rel=1e-10)


def test_fid_with_fewer_samples_than_dimensions_is_finite():
    x = torch.randn(10, 32, dtype=torch.float64)
    value = frechet_distance(x.mean(0), torch.cov(x.T), x.mean(0), torch.cov((x + 1e-3 * torch.randn_like(x)).T))
    assert math.isfinite(value) and value > -1e-6


def test_inception_score_extremes():
    assert inception_score(torch.zeros(40, 1008), splits=4) == pytest.approx((1.0, 0.0))
    # Confident predictions spread evenly over 5 classes in every split: IS = 5.
    logits = torch.zeros(40, 1008)
    logits[torch.arange(40), torch.arange(40) % 5] = 100.0
    mean, std = inception_score(logits, splits=4)
    assert mean == pytest.approx(5.0, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)


def test_codebook_usage_on_known_indices():
    usage = CodebookUsage(codebook_size=8)
    usage.update(torch.tensor([[0, 0, 1, 1]]))
    usage.update(torch.tensor([2, 2, 3, 3]))
    stats = usage.compute()
    assert stats["usage"].item() == 0.5 and stats["used_codes"].item() == 4
    assert stats["perplexity"].item() == pytest.approx(4.0)
    # Merging states as a distributed sum would: counts (3,3,3,3,1,1,1,1).
    part_a, part_b = CodebookUsage(codebook_size=8), CodebookUsage(codebook_size=8)
    part_a.update(torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    part_b.update(torch.arange(8))
    part_a.merge_state(part_b)
    p = np.array([3, 3, 3, 3, 1, 1, 1, 1]) / 16
    merged = part_a.compute()
    assert merged["usage"].item() == 1.0
    assert merged["perplexity"].item() == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    with pytest.raises(ValueError, match="8"):
        usage.update(torch.tensor([8]))
