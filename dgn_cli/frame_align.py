"""Align a video window's neighbours to its centre frame before the video DGN sees them.

Why: the video DGN learned on synthetic sequences whose frames lie a few px apart. In real
footage a pan moves tens of px between frames (bikes.mp4: ~35 px from frame 73 to 74), and the
DGN then mixes the misaligned neighbours into the centre: doubled letters. So, the way the
video deblurring literature pre-aligns its inputs (DVD's homography alignment, simplified here
to the dominant translation), each neighbour is shifted onto the centre first:

- The shift is the global translation between the two frames, found by phase correlation on
  grey copies downscaled to at most MATCH_SIDE px (sub-pixel, insensitive to brightness
  changes), rounded to whole px: a whole-px shift moves pixels without resampling them, so a
  neighbour keeps all its sharpness; the < 0.5 px left over is motion the DGN was trained on.
- The strip a shift uncovers is filled from the centre frame (nothing invented there).
- A neighbour with no reliable match (phase-correlation peak below MIN_RESPONSE: a cut, a
  flash, rotation or zoom that no single shift explains; or a shift of more than
  MAX_SHIFT_FRACTION of the frame) is replaced by the centre frame, so the DGN sees a still
  window rather than a wrong one.

Scene cuts are already handled by the sliding window (video.window); this is the within-shot
motion. Cost: a few ms a frame, nothing next to the DGN.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

MIN_RESPONSE = 0.1  # phase-correlation peak below this: no match (a cut), not motion
MATCH_SIDE = 512  # px: the long side the shift is measured at
# A shift past this fraction of the frame side leaves little overlap and is more often a
# spurious peak than motion (bikes.mp4's fastest pan: ~11 % of the width between t and t-2).
MAX_SHIFT_FRACTION = 0.25


@dataclass
class WindowAlignment:
    """What `align_window` did: per frame of the window, in time order."""

    # (dx, dy) whole px: where each frame's content lies relative to the centre frame's
    # (neighbour(x) = centre(x - d)), undone by the alignment; (0, 0) for the centre
    shifts: list[tuple[int, int]] = field(default_factory=list)
    replaced: list[int] = field(default_factory=list)  # window positions replaced by the centre

    @property
    def largest_shift(self) -> float:
        return max((float(np.hypot(*s)) for s in self.shifts), default=0.0)


def grey(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB, any range -> (H, W) float64 luma (ITU-R BT.601)."""
    return np.asarray(frame, dtype=np.float64) @ np.asarray((0.299, 0.587, 0.114))


def global_shift(ref: np.ndarray, moving: np.ndarray) -> tuple[float, float, float]:
    """(dx, dy, response): `moving` is about `ref` translated by (dx, dy) px (x right, y down).

    ref, moving: (H, W) grey float arrays of one size. response in [0, 1] is the height of the
    phase-correlation peak: near 1 for a clean translation, below MIN_RESPONSE for no match."""
    import cv2

    a, b = np.ascontiguousarray(ref, np.float64), np.ascontiguousarray(moving, np.float64)
    window = cv2.createHanningWindow(a.shape[::-1], cv2.CV_64F)  # no wrap-around edge response
    (dx, dy), response = cv2.phaseCorrelate(a, b, window)
    return float(dx), float(dy), float(response)


def _small_grey(frame: torch.Tensor) -> tuple[np.ndarray, float]:
    """(1, 3, H, W) [0, 1] -> ((h, w) float64 grey at most MATCH_SIDE px long, scale h / H)."""
    import cv2

    rgb = frame[0].detach().float().permute(1, 2, 0).cpu().numpy()
    scale = min(1.0, MATCH_SIDE / max(rgb.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return grey(rgb), scale


def shift_frame(moving: torch.Tensor, fill: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """out(x, y) = moving(x + dx, y + dy) where that lies inside the frame, else fill(x, y).

    moving, fill: (B, C, H, W) of one shape; dx, dy whole px."""
    out = fill.clone()
    h, w = moving.shape[-2:]
    if abs(dx) >= w or abs(dy) >= h:
        return out
    ys, xs = slice(max(0, -dy), min(h, h - dy)), slice(max(0, -dx), min(w, w - dx))
    src_y, src_x = slice(ys.start + dy, ys.stop + dy), slice(xs.start + dx, xs.stop + dx)
    out[..., ys, xs] = moving[..., src_y, src_x]
    return out


def align_window(frames: torch.Tensor, count: int) -> tuple[torch.Tensor, WindowAlignment]:
    """Shift every neighbour of a (1, 3 * count, H, W) [0, 1] window onto its centre frame.

    Returns the aligned window (same shape, dtype and device) and what was done. A one-frame
    window is returned as is."""
    report = WindowAlignment(shifts=[(0, 0)] * count)
    if count <= 1:
        return frames, report
    chs = frames.shape[1] // count
    parts = list(frames.split(chs, dim=1))
    mid = count // 2
    centre = parts[mid]
    ref, scale = _small_grey(centre)
    for k, part in enumerate(parts):
        if k == mid:
            continue
        dx, dy, response = global_shift(ref, _small_grey(part)[0])
        h, w = ref.shape
        too_far = abs(dx) > MAX_SHIFT_FRACTION * w or abs(dy) > MAX_SHIFT_FRACTION * h
        if response < MIN_RESPONSE or too_far:
            parts[k] = centre
            report.replaced.append(k)
            continue
        sx, sy = round(dx / scale), round(dy / scale)
        report.shifts[k] = (sx, sy)
        if sx or sy:
            parts[k] = shift_frame(part, centre, sx, sy)
    return torch.cat(parts, dim=1), report
