"""Pictures for people: colour-mapped depth, side-by-side comparison panels, mask previews.

All take and return numpy arrays: depth (H, W) float in [0, 1] (1 = nearest), pictures
(H, W, 3) uint8 RGB.
"""

from __future__ import annotations

import cv2
import numpy as np

from dgn_cli import io

COLORMAPS = {
    name.removeprefix("COLORMAP_").lower(): getattr(cv2, name)
    for name in dir(cv2)
    if name.startswith("COLORMAP_")
}


def colorize(depth: np.ndarray, colormap: str = "turbo") -> np.ndarray:
    """(H, W) float depth in [0, 1] -> (H, W, 3) uint8 RGB through an OpenCV colormap
    (near = the hot end); "gray" gives a plain gray ramp."""
    d8 = (np.clip(depth, 0, 1) * 255 + 0.5).astype(np.uint8)
    if colormap == "gray":
        return np.repeat(d8[:, :, None], 3, axis=2)
    return cv2.applyColorMap(d8, COLORMAPS[colormap])[:, :, ::-1]


def compare_panel(
    blurred: np.ndarray, depth_rgb: np.ndarray, sharp: np.ndarray, mask_rgb=None
) -> np.ndarray:
    """blurred | depth | [mask |] deblurred side by side, 8-bit RGB, 8-px white gaps."""
    pictures = (blurred, depth_rgb, *([mask_rgb] if mask_rgb is not None else []), sharp)
    panels = [io.convert_dtype(p, np.dtype(np.uint8)) for p in pictures]
    gap = np.full((panels[0].shape[0], 8, 3), 255, np.uint8)
    row = [panels[0]]
    for p in panels[1:]:
        row += [gap, p]
    return np.concatenate(row, axis=1)


def mask_rgb(mask) -> np.ndarray:
    """(1, 1, H, W) mask tensor -> (H, W, 3) uint8 gray (white = deblurred, black = kept)."""
    return colorize(mask[0, 0].numpy(), "gray")
