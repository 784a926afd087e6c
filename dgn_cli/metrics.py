"""Image quality metrics shared by training validation and the benchmark: PSNR and SSIM;
and the no-reference edge energy used on real photos and video (`laplacian_variance`).

Conventions (the common GOPRO evaluation convention):
- Both metrics work on RGB images in the 0-255 range (data range 255). Network outputs in
  [-1, 1] are first mapped with `to_255`, which rounds to integer levels as saving an 8-bit
  PNG would, so training-time validation and the benchmark on saved files agree.
- PSNR = 10 log10(255^2 / MSE), the MSE taken over all pixels and all three channels.
- SSIM (Wang et al. 2004): an 11 x 11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03,
  computed on each RGB channel separately over the "valid" region (no padding, as the
  reference MATLAB code does), the SSIM map averaged, then the three channel values averaged.
  Plain (population) local variances, not the sample-covariance correction.

Every function takes torch tensors (B, 3, H, W) or (3, H, W), or numpy arrays (H, W, 3) /
(B, H, W, 3) through the `*_np` helpers, and computes in float64 so the numbers do not depend
on the device or on the input dtype. Identical images give PSNR = inf.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

DATA_RANGE = 255.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def to_255(image: torch.Tensor, quantize: bool = True) -> torch.Tensor:
    """[-1, 1] -> [0, 255] (clamped; rounded to integer levels unless `quantize` is False)."""
    x = ((image.detach().double() + 1.0) * 127.5).clamp(0.0, 255.0)
    return x.round() if quantize else x


def _batched(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"expected (B, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    return x.double()


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image, inputs in 0-255: (B, C, H, W) x2 -> (B,) float64."""
    pred, target = _batched(pred), _batched(target)
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch: {tuple(pred.shape)} vs {tuple(target.shape)}")
    mse = (pred - target).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(DATA_RANGE**2 / mse)  # mse 0 -> inf


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 2-D Gaussian (size, size), float64."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM per image, inputs in 0-255: (B, C, H, W) x2 -> (B,) float64 (mean over channels).

    H and W must be at least 11 (the window). See the module docstring for the convention.
    """
    pred, target = _batched(pred), _batched(target)
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch: {tuple(pred.shape)} vs {tuple(target.shape)}")
    b, c, h, w = pred.shape
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW}, got {h} x {w}"
        )
    # The 2-D Gaussian is the outer product of a 1-D one, so the local means are two 1-D passes
    # (22 taps instead of 121; the same numbers to float64 rounding, ~5x faster on a CPU).
    g = gaussian_window()[SSIM_WINDOW // 2]
    g = (g / g.sum()).to(pred.device)
    rows = g.view(1, 1, SSIM_WINDOW, 1).expand(c, 1, SSIM_WINDOW, 1)
    cols = g.view(1, 1, 1, SSIM_WINDOW).expand(c, 1, 1, SSIM_WINDOW)

    def blur(x: torch.Tensor) -> torch.Tensor:  # per-channel local mean, valid region only
        return F.conv2d(F.conv2d(x, rows, groups=c), cols, groups=c)

    mu_x, mu_y = blur(pred), blur(target)
    var_x = blur(pred * pred) - mu_x**2
    var_y = blur(target * target) - mu_y**2
    cov = blur(pred * target) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return ssim_map.mean(dim=(2, 3)).mean(dim=1)  # per channel, then the channel average


def _np_to_torch(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x)).double()
    return t.permute(2, 0, 1) if t.dim() == 3 else t.permute(0, 3, 1, 2)


def psnr_np(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR of one (H, W, 3) image pair in 0-255 (uint8 or float)."""
    return float(psnr(_np_to_torch(pred), _np_to_torch(target))[0])


def ssim_np(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM of one (H, W, 3) image pair in 0-255 (uint8 or float)."""
    return float(ssim(_np_to_torch(pred), _np_to_torch(target))[0])


def psnr_from_mse(mse: float) -> float:
    """The PSNR (dB) that a mean squared error on the 0-255 scale gives."""
    return math.inf if mse == 0 else 10.0 * math.log10(DATA_RANGE**2 / mse)


def laplacian_variance(
    image: np.ndarray, mask: np.ndarray | None = None, *, bgr: bool = False
) -> float:
    """Edge energy: the variance of the Laplacian of the grey image (no reference needed).

    image: (H, W) grey or (H, W, 3) RGB (BGR if `bgr`, as cv2.imread gives), any range;
    mask: optional (H, W) bool of the pixels to count. Higher means more fine detail, which
    is sharper edges or more noise, so compare it between versions of the same picture only.
    """
    import cv2  # only the real-photo/video tools need it; keeps `import dgn_cli.metrics` light

    grey = np.asarray(image, dtype=np.float64)
    if grey.ndim == 3:
        weights = (0.114, 0.587, 0.299) if bgr else (0.299, 0.587, 0.114)  # ITU-R BT.601, as cv2
        grey = grey @ np.asarray(weights)
    response = cv2.Laplacian(grey, cv2.CV_64F)
    return float((response if mask is None else response[mask]).var())
