"""Exact depth degraded the way monocular estimators are wrong, for training the DGN.

Trained on exact depth, a DGN learns to trust every depth edge; at inference it gets an
estimator's map, which is smooth, low-resolution, off in scale, shift and gamma, has holes
and noise. Each sample gets a random mix of those errors (each applied with probability
1/2), so the refinement branch learns to correct a plausible map and the deblurring branch
learns how far to trust it.

One sample in FLAT_PROB gets no depth at all: a flat map at a random level, what an estimator
that sees nothing says (the shipped small estimator said 0.224 everywhere until stretch 4).
Trained only on informative maps, the DGN did worse with its refined depth than with the flat
map itself (27.58 against 27.63 dB on the handheld split); with flat maps in training the
refinement branch learns to start from the image alone and the deblurring branch to rely on
the map only as far as it carries signal.

degrade_depth(depth (B, 1, H, W) in [0, 1], generator) -> (B, 1, H, W) in [0, 1]; all draws
come from the CPU `generator`, so a training step's degradation is a pure function of its seed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _u(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _coin(g: torch.Generator) -> bool:
    return bool(torch.rand((), generator=g) < 0.5)


FLAT_PROB = 0.15  # share of samples whose D_b is flat (no depth signal at all)


def degrade_one(d: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One (1, H, W) map in [0, 1] -> a degraded copy in [0, 1]."""
    if float(torch.rand((), generator=g)) < FLAT_PROB:
        return torch.full_like(d, _u(g, 0.0, 1.0), dtype=torch.float32)
    x = d.float()[None]  # (1, 1, H, W)
    h, w = x.shape[-2:]
    if _coin(g):  # low resolution and smooth: estimators work at a fraction of the frame size
        factor = _u(g, 2.0, 8.0)
        small = (max(1, round(h / factor)), max(1, round(w / factor)))
        x = F.interpolate(F.interpolate(x, size=small, mode="area"), size=(h, w), mode="bilinear")
    if _coin(g):  # gamma: wrong compression of the depth range
        x = x.clamp(0, 1) ** _u(g, 0.6, 1.6)
    if _coin(g):  # scale and shift errors
        x = x * _u(g, 0.7, 1.1) + _u(g, -0.1, 0.2)
    if _coin(g):  # holes: a few boxes where the estimator says something flat and wrong
        for _ in range(int(torch.randint(1, 4, (), generator=g))):
            bh, bw = max(1, int(h * _u(g, 0.05, 0.3))), max(1, int(w * _u(g, 0.05, 0.3)))
            y0 = int(torch.randint(0, max(1, h - bh + 1), (), generator=g))
            x0 = int(torch.randint(0, max(1, w - bw + 1), (), generator=g))
            x[..., y0 : y0 + bh, x0 : x0 + bw] = _u(g, 0.0, 1.0)
    if _coin(g):  # noise
        x = x + torch.randn(x.shape, generator=g) * _u(g, 0.005, 0.05)
    if _coin(g):  # quantisation (8-bit or coarser exports)
        levels = int(torch.randint(16, 257, (), generator=g))
        x = torch.round(x.clamp(0, 1) * (levels - 1)) / (levels - 1)
    return x.clamp(0, 1)[0]


def degrade_depth(depth: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, 1, H, W) in [0, 1] -> degraded (B, 1, H, W), each sample its own random mix."""
    cpu = depth.detach().float().cpu()
    out = torch.stack([degrade_one(cpu[i], generator) for i in range(cpu.shape[0])])
    return out.to(depth.device, depth.dtype)
