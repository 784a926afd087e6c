"""`DepthEstimator`: turns any depth network into the project's depth convention.

Every estimator, whatever its native output (disparity, log depth, ...), leaves here as
normalised inverse depth in [0, 1] (1 = nearest), (B, 1, H, W), at the input's resolution.
This is the one place where native outputs are converted.
"""

from __future__ import annotations

import torch
from torch import nn


def robust_minmax(x: torch.Tensor, low: float = 0.01, high: float = 0.99) -> torch.Tensor:
    """Per-image min-max to [0, 1] using percentiles, so a few outlier pixels do not squash
    the range. (B, 1, H, W) -> (B, 1, H, W) in [0, 1]."""
    flat = x.flatten(1).float()
    if flat.shape[1] > 2**24:  # torch.quantile's input limit; a strided sample is plenty
        flat = flat[:, :: flat.shape[1] // 2**23 + 1]
    q = torch.quantile(flat, torch.tensor([low, high], device=x.device), dim=1)  # (2, B)
    lo, hi = q[0].view(-1, 1, 1, 1), q[1].view(-1, 1, 1, 1)
    return ((x.float() - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1).to(x.dtype)


class DepthEstimator(nn.Module):
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) normalised inverse depth in [0, 1], 1 = nearest.

    `kind` names the adapter for the wrapped network's input/output convention:
    - "small": the project's SmallDepthNet, which already predicts the convention.
    """

    def __init__(self, net: nn.Module, kind: str = "small", name: str = ""):
        super().__init__()
        if kind not in ADAPTERS:
            raise ValueError(f"unknown depth estimator kind {kind!r}; known: {sorted(ADAPTERS)}")
        self.net = net
        self.kind = kind
        self.name = name or kind

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return ADAPTERS[self.kind](self.net, image)


def _small(net: nn.Module, image: torch.Tensor) -> torch.Tensor:
    return net(image).clamp(0, 1)


# kind -> function(net, image01) -> normalised inverse depth. The public estimators
# (Depth Anything V2, MegaDepth) register their adapters here too.
ADAPTERS = {"small": _small}
