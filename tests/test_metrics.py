"""PSNR / SSIM (dgn_cli.metrics) against independent formulas on fixtures."""

import math

import numpy as np
import pytest
import torch

from dgn_cli.metrics import (
    laplacian_variance,
    psnr,
    psnr_from_mse,
    psnr_np,
    ssim,
    ssim_np,
    to_255,
)


def _image(h=24, w=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(20, 236, size=(h, w, 3)).astype(np.uint8)


def test_psnr_of_a_known_noise_level():
    ref = _image()
    # +-5 on every value (never clipped: values stay in 15..240): MSE is exactly 25.
    signs = np.where(np.indices(ref.shape).sum(0) % 2 == 0, 5, -5)
    noisy = (ref.astype(int) + signs).astype(np.uint8)
    assert psnr_np(noisy, ref) == pytest.approx(10 * math.log10(255**2 / 25), abs=1e-9)
    assert psnr_from_mse(25.0) == pytest.approx(34.1514, abs=1e-4)


def test_psnr_identical_is_inf_and_batched():
    a = torch.randint(0, 255, (2, 3, 16, 16)).float()
    b = a.clone()
    b[1] += 1.0  # MSE 1 on the second image only
    values = psnr(a, b)
    assert values.shape == (2,)
    assert math.isinf(values[0].item())
    assert values[1].item() == pytest.approx(20 * math.log10(255), abs=1e-9)


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. written out window by window (no convolutions), per channel, averaged."""
    size, sigma = 11, 1.5
    ax = np.arange(size) - (size - 1) / 2
    g = np.exp(-(ax**2) / (2 * sigma**2))
    win = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    per_channel = []
    for ch in range(3):
        a, b = x[..., ch].astype(np.float64), y[..., ch].astype(np.float64)
        values = []
        for i in range(a.shape[0] - size + 1):
            for j in range(a.shape[1] - size + 1):
                pa, pb = a[i : i + size, j : j + size], b[i : i + size, j : j + size]
                ma, mb = (win * pa).sum(), (win * pb).sum()
                va = (win * (pa - ma) ** 2).sum()
                vb = (win * (pb - mb) ** 2).sum()
                cov = (win * (pa - ma) * (pb - mb)).sum()
                values.append(
                    ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
                )
        per_channel.append(np.mean(values))
    return float(np.mean(per_channel))


def test_ssim_matches_the_windowed_formula():
    ref = _image(18, 16)
    rng = np.random.default_rng(1)
    other = np.clip(ref.astype(int) + rng.integers(-30, 31, size=ref.shape), 0, 255).astype(
        np.uint8
    )
    assert ssim_np(other, ref) == pytest.approx(_ssim_reference(other, ref), abs=1e-10)
    assert ssim_np(ref, ref) == pytest.approx(1.0, abs=1e-12)


def test_ssim_is_lower_for_more_noise_and_rejects_tiny_images():
    ref = torch.rand(1, 3, 32, 32) * 255
    small = ssim(ref + torch.randn_like(ref) * 5, ref).item()
    large = ssim(ref + torch.randn_like(ref) * 40, ref).item()
    assert 1.0 > small > large
    with pytest.raises(ValueError, match="at least 11"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


def test_to_255_maps_and_quantises():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0, -3.0])
    assert to_255(x).tolist() == [0.0, 128.0, 255.0, 255.0, 0.0]  # 127.5 rounds half to even
    assert to_255(x, quantize=False)[1].item() == 127.5


def test_laplacian_variance_ranks_sharp_above_blurred_and_honours_channel_order_and_mask():
    import cv2

    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, size=(48, 64, 3)).astype(np.uint8)
    blurred = cv2.GaussianBlur(sharp, (7, 7), 2.0)
    assert laplacian_variance(sharp) > 10 * laplacian_variance(blurred)
    assert laplacian_variance(np.full((32, 32, 3), 77, np.uint8)) == 0.0
    # RGB and BGR readings of the same picture agree; grey input is taken as is
    grey = cv2.cvtColor(sharp, cv2.COLOR_RGB2GRAY)
    rgb, bgr = laplacian_variance(sharp), laplacian_variance(sharp[..., ::-1], bgr=True)
    assert rgb == pytest.approx(bgr)
    assert laplacian_variance(grey) == pytest.approx(rgb, rel=0.02)  # grey rounded to uint8
    # a mask counts only its pixels: flat left half, textured right half
    half = np.zeros((32, 64), np.uint8)
    half[:, 32:] = rng.integers(0, 256, size=(32, 32))
    left = np.zeros((32, 64), bool)
    left[2:-2, 2:28] = True
    assert laplacian_variance(half, left) == 0.0 < laplacian_variance(half, ~left)
