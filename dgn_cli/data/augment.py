"""The paper's training augmentation (Sec. V-A), applied identically to every map of a sample.

Random horizontal and vertical flips and a +-90 degree rotation, the same for the blurred
frames, the sharp frame and the depth maps; Gaussian noise (sigma 0.01 in [0, 1] units) on the
blurred input only; then images are normalised to [-1, 1] (depth stays in [0, 1]).
Beyond the paper: `maybe_jpeg` passes the blurred input through JPEG (`dgn train --jpeg P`),
since what users deblur (phone photos, web images, decoded video) is compressed, and a net that
never saw 8x8-block and ringing artefacts reads them as structure to sharpen.

All arrays are (H, W, C) numpy; every random choice comes from the `rng` passed in, so a sample
is a pure function of the seed that made the rng.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

# Quality range of a compressed training input: phone cameras save at ~90-95, web images and
# decoded video frames are often 60-80.
JPEG_QUALITY = (60, 95)


@dataclass(frozen=True)
class Geometric:
    """One draw of the geometric augmentation: flips, then rotation by `rot90` quarter turns
    (0, 1 = +90 degrees counter-clockwise, 3 = -90 degrees)."""

    hflip: bool = False
    vflip: bool = False
    rot90: int = 0

    @staticmethod
    def draw(rng: np.random.Generator, square: bool = True) -> Geometric:
        hflip = bool(rng.random() < 0.5)
        vflip = bool(rng.random() < 0.5)
        rot = int(rng.choice([0, 1, 3]))
        # A quarter turn of a non-square sample would change its shape (and break batching),
        # so it only rotates square samples; the draw is made anyway to keep streams aligned.
        return Geometric(hflip, vflip, rot if square else 0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(H, W, ...) -> the transformed array (a contiguous copy)."""
        if self.hflip:
            x = x[:, ::-1]
        if self.vflip:
            x = x[::-1]
        if self.rot90:
            x = np.rot90(x, self.rot90, axes=(0, 1))
        return np.ascontiguousarray(x)


def add_noise(x01: np.ndarray, rng: np.random.Generator, sigma: float = 0.01) -> np.ndarray:
    """Gaussian noise on an image in [0, 1], clipped back to [0, 1]; float32."""
    noise = rng.standard_normal(x01.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(x01.astype(np.float32) + noise, 0.0, 1.0)


def jpeg_roundtrip(frames: np.ndarray, quality: int) -> np.ndarray:
    """(H, W, 3k) RGB frames (uint8, or float in [0, 1]) through JPEG at `quality` (1-100,
    OpenCV's 4:2:0 chroma), each 3-channel frame on its own; the same shape and dtype back."""
    if frames.ndim != 3 or frames.shape[2] % 3:
        raise ValueError(f"expected (H, W, 3k) frames, got {frames.shape}")
    as_u8 = frames if frames.dtype == np.uint8 else np.round(np.clip(frames, 0, 1) * 255)
    as_u8 = as_u8.astype(np.uint8)
    out = np.empty_like(as_u8)
    for k in range(0, frames.shape[2], 3):
        bgr = np.ascontiguousarray(as_u8[..., [k + 2, k + 1, k]])  # OpenCV wants BGR
        ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise RuntimeError("OpenCV could not JPEG-encode a training frame")
        out[..., k : k + 3] = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]
    if frames.dtype == np.uint8:
        return out
    return out.astype(frames.dtype) / 255.0


def maybe_jpeg(frames: np.ndarray, rng: np.random.Generator, prob: float) -> np.ndarray:
    """With probability `prob`, `jpeg_roundtrip` at a quality drawn from JPEG_QUALITY (one
    quality for all frames of a window, as one encoder made them); otherwise `frames` as is.
    Draws from `rng` only when prob > 0, so prob 0 leaves every later draw unchanged."""
    if prob <= 0:
        return frames
    compress = rng.random() < prob
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    return jpeg_roundtrip(frames, quality) if compress else frames


def random_crop_box(rng: np.random.Generator, h: int, w: int, crop: int) -> tuple[int, int]:
    """Top-left (y, x) of a uniformly random crop x crop window inside h x w."""
    return int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))


def to_tensor_pm1(x01: np.ndarray) -> torch.Tensor:
    """(H, W, C) in [0, 1] -> (C, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(x01.transpose(2, 0, 1), np.float32) * 2.0 - 1.0)


def to_tensor_01(x01: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, 1) in [0, 1] -> (1, H, W) float32."""
    if x01.ndim == 2:
        x01 = x01[..., None]
    return torch.from_numpy(np.ascontiguousarray(x01.transpose(2, 0, 1), np.float32))
