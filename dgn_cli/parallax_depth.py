"""Initial depth D_b of a video window's centre frame from motion parallax, not from one image.

Why: the small depth estimator reads one blurred frame and learned little more than a
constant (Pearson +0.15 with the exact depth on the handheld split); reading depth from blur
in one image takes far more training than a CPU campaign has. A video window carries a cue
that needs no training: when the camera translates by t, a point at inverse depth d moves by
d * t (structure from motion), so how far each pixel moved between frames, once the motion
that does not depend on depth is taken out, is its inverse depth up to scale — what D_b is.

Model, per neighbour (the synthetic camera's own, and a small-motion real camera's):
    flow(p) = d(p) * t + u + omega * J (p - c)
(t: translation, u: a uniform pan, omega: an in-plane roll about the centre c, J (x, y) =
(-y, x)). Across t, the flow holds no depth: its component along n = t-perp is u.n + omega *
(J (p - c)).n, so for each candidate direction of t (NUM_ANGLES over 180 degrees) u.n and omega
are fitted by least squares and the direction whose fit leaves the smallest median residual
wins (median: moving objects and failed matches are outliers). Along t, d(p) |t| = flow.t -
omega * (J (p - c)).t (+ u.t, a constant the normalisation removes). The sign of t is chosen so
that most of the frame moves forward (d > 0).

Each neighbour gives d up to scale; they are averaged weighted by their parallax (a neighbour
two frames away moves twice as far: twice the signal), smoothed, and normalised per frame like
the training depth (1 = nearest): (d - median) / (p99.5 - median), clipped to [0, 1], which
puts the most common depth (the backdrop) at 0. Measured on the synthetic video split (40
frames, `dgn benchmark ... --weights dgn-video --video-depth parallax`, BENCHMARKS "stretch
9"): Pearson with the exact depth +0.69 (the small estimator: +0.01), RMSE 0.196 against 0.249
for the best per-frame constant. The shipped video DGN does not turn it into sharper frames
(-0.02 dB against the estimator's flat map), so it is an option, not the default.

Limits: a window with less than MIN_PARALLAX_PX of depth-dependent motion (a still camera, a
pure pan or roll, one frame) has no parallax: `window_parallax_depth` returns None and the
caller uses the image estimator. An object moving on its own reads as nearer or farther than
it is; a forward-moving camera (zoom-like flow) is outside the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dgn_cli import frame_align

NUM_ANGLES = 90  # candidate directions of t over 180 degrees (2-degree steps)
FIT_STRIDE = 4  # the fit uses every 4th pixel each way of the matching-size flow
MIN_PARALLAX_PX = 2.0  # full-size px of depth-dependent motion below which there is no cue
SMOOTH_SIGMA = 1.5  # px at the matching size: flow noise, not depth edges
HIGH_PERCENTILE = 99.5  # the nearest depth: a high percentile, robust to a few bad matches


@dataclass
class Parallax:
    """One neighbour's depth cue: `along` (h, w) d * |t| in matching-size px; `spread` its
    depth-dependent range (p99.5 - median) in full-size px."""

    along: np.ndarray
    spread: float


def fit_parallax(flow: np.ndarray, scale: float) -> Parallax:
    """flow (h, w, 2) from the centre to a neighbour (frame_align.measure_flow's `fwd`, at
    `scale` = matching size / full size) -> the depth-dependent motion along t."""
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    jx, jy = -(ys - (h - 1) / 2), xs - (w - 1) / 2  # J (p - c): the roll's flow per radian
    fx, fy = flow[..., 0].astype(np.float64), flow[..., 1].astype(np.float64)
    sub = (slice(None, None, FIT_STRIDE), slice(None, None, FIT_STRIDE))
    sfx, sfy, sjx, sjy = fx[sub].ravel(), fy[sub].ravel(), jx[sub].ravel(), jy[sub].ravel()
    best: tuple[float, float, float] | None = None  # (median residual, angle, omega)
    for angle in np.linspace(0.0, np.pi, NUM_ANGLES, endpoint=False):
        nx, ny = -np.sin(angle), np.cos(angle)  # across t
        across = sfx * nx + sfy * ny
        design = np.stack([np.ones_like(across), sjx * nx + sjy * ny], axis=1)
        (pan, omega), *_ = np.linalg.lstsq(design, across, rcond=None)
        cost = float(np.median(np.abs(across - pan - omega * design[:, 1])))
        if best is None or cost < best[0]:
            best = (cost, float(angle), float(omega))
    assert best is not None
    _, angle, omega = best
    tx, ty = np.cos(angle), np.sin(angle)
    along = fx * tx + fy * ty - omega * (jx * tx + jy * ty)
    if np.median(along) < 0:  # t points the way most of the frame moved
        along = -along
    spread = float(np.percentile(along, HIGH_PERCENTILE) - np.median(along)) / scale
    return Parallax(along.astype(np.float32), spread)


def normalise(raw: np.ndarray) -> np.ndarray:
    """Inverse depth up to scale -> [0, 1]: the median (the most common depth) at 0, the
    HIGH_PERCENTILE at 1, like the training depth's min-max with the backdrop near 0."""
    mid, high = np.median(raw), np.percentile(raw, HIGH_PERCENTILE)
    return np.clip((raw - mid) / max(float(high - mid), 1e-6), 0.0, 1.0).astype(np.float32)


def window_parallax_depth(
    frames: torch.Tensor, count: int, flows: frame_align.WindowFlows | None = None
) -> torch.Tensor | None:
    """(1, 3 * count, H, W) [0, 1] window -> (1, 1, H, W) [0, 1] normalised inverse depth of
    its centre frame from motion parallax, or None when the window has no parallax (fewer
    than 2 frames, a still camera, a pure pan or roll: under MIN_PARALLAX_PX). `flows`: the
    window's `frame_align.window_flows`, when the caller has them already."""
    import cv2

    if count <= 1:
        return None
    if flows is None:
        flows = frame_align.window_flows(frames, count)
    cues = [fit_parallax(flow.fwd, flow.scale) for flow in flows.flows.values()]
    cues = [c for c in cues if c.spread >= MIN_PARALLAX_PX]
    if not cues:
        return None
    # each cue scaled to its own nearest depth, weighted by how much parallax it holds
    raw = sum(
        c.spread * c.along / max(float(np.percentile(c.along, HIGH_PERCENTILE)), 1e-6) for c in cues
    ) / sum(c.spread for c in cues)
    raw = cv2.GaussianBlur(np.asarray(raw, np.float32), (0, 0), SMOOTH_SIGMA)
    h, w = flows.size
    depth = normalise(cv2.resize(raw, (w, h), interpolation=cv2.INTER_LINEAR))
    return torch.from_numpy(depth)[None, None]
