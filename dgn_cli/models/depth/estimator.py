"""`DepthEstimator`: turns any depth network into the project's depth convention.

Every estimator, whatever its native output (disparity, log depth, ...), leaves here as
normalised inverse depth in [0, 1] (1 = nearest), (B, 1, H, W), at the input's resolution.
This is the one place where native outputs are converted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dgn_cli.models.depth.depth_anything import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PATCH,
    DepthAnythingV2Small,
)
from dgn_cli.models.depth.megadepth import MegaDepthHourglass


def robust_minmax(
    x: torch.Tensor, low: float = 0.01, high: float = 0.99, min_spread: float = 0.0
) -> torch.Tensor:
    """Per-image min-max to [0, 1] using percentiles, so a few outlier pixels do not squash
    the range. (B, 1, H, W) -> (B, 1, H, W) in [0, 1]. An image whose percentiles lie less
    than `min_spread` apart reads as a flat 0.5 (no cue), not as its noise stretched to [0, 1]."""
    flat = x.flatten(1).float()
    if flat.shape[1] > 2**24:  # torch.quantile's input limit; a strided sample is plenty
        flat = flat[:, :: flat.shape[1] // 2**23 + 1]
    q = torch.quantile(flat, torch.tensor([low, high], device=x.device), dim=1)  # (2, B)
    lo, hi = q[0].view(-1, 1, 1, 1), q[1].view(-1, 1, 1, 1)
    out = ((x.float() - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
    if min_spread > 0:
        out = torch.where(hi - lo < min_spread, torch.full_like(out, 0.5), out)
    return out.to(x.dtype)


# A relative SmallDepthNet whose whole-frame answer spans less than this (1st to 99th
# percentile, in its sigmoid's [0, 1]) has found no depth cue in the frame: for a net trained on
# the blur extent (--depth-target extent, 1 = 64 px) that is under ~1.3 px of blur difference,
# e.g. a sharp photo. Min-max normalising it would blow its noise up to a full-range depth map.
MIN_RELATIVE_SPREAD = 0.02


class DepthEstimator(nn.Module):
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) normalised inverse depth in [0, 1], 1 = nearest.

    `kind` names the adapter for the wrapped network's input/output convention:
    - "small": the project's SmallDepthNet, which predicts the convention (a relative one is
      min-max normalised per frame, see `small_depth`).
    - "depth-anything-v2": DepthAnythingV2Small (ImageNet-normalised input at a shorter side
      of 518, disparity output).
    - "megadepth": MegaDepthHourglass ([0, 1] input at about 384x512, log-depth output).
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


def small_depth(net: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """SmallDepthNet (or its ONNX graph) on whole frames -> the convention: its answer as it
    is, or for a `relative` net (scale-and-shift-invariant or blur-extent training) min-max
    normalised per frame with the same percentiles as the public relative estimators; a frame
    whose answer is flat (spread < MIN_RELATIVE_SPREAD) gets a flat 0.5: no cue, no depth."""
    depth = net(image)
    # Any net already in the convention may use this adapter; only a relative config changes it.
    if getattr(getattr(net, "config", None), "relative", False):
        depth = robust_minmax(depth, min_spread=MIN_RELATIVE_SPREAD)
    return depth.clamp(0, 1)


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    # Antialias only when shrinking: a 24 MP photo brought down to 518 px aliases badly
    # without it (the references resize with OpenCV, whose area filter is similar).
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=shrink)


def depth_anything_size(h: int, w: int, short: int = 518) -> tuple[int, int]:
    """Network input size: shorter side `short`, aspect kept, each side a multiple of 14
    (rounded to nearest, never below `short`)."""
    scale = short / min(h, w)

    def side(n: int) -> int:
        m = round(n * scale / PATCH) * PATCH
        return m if m >= short else math.ceil(n * scale / PATCH) * PATCH

    return side(h), side(w)


def megadepth_size(h: int, w: int, area: int = 384 * 512) -> tuple[int, int]:
    """Network input size: about `area` pixels (the reference 384x512), aspect kept, each side
    a multiple of 16. A 4:3 landscape image gives exactly 384x512."""
    scale = math.sqrt(area / (h * w))
    return max(16, round(h * scale / 16) * 16), max(16, round(w * scale / 16) * 16)


def _net_dtype(net: nn.Module, fallback: torch.dtype) -> torch.dtype:
    p = next(net.parameters(), None)
    return p.dtype if p is not None else fallback


def _depth_anything(net: nn.Module, image: torch.Tensor) -> torch.Tensor:
    h, w = image.shape[-2:]
    x = _resize(image.float(), depth_anything_size(h, w), mode="bicubic")
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    x = ((x - mean) / std).to(_net_dtype(net, x.dtype))
    disparity = net(x).unsqueeze(1).float()  # (B, 1, h', w'), larger = nearer
    depth = robust_minmax(disparity)
    return _resize(depth, (h, w), mode="bilinear").clamp(0, 1).to(image.dtype)


def _megadepth(net: nn.Module, image: torch.Tensor) -> torch.Tensor:
    h, w = image.shape[-2:]
    x = _resize(image.float(), megadepth_size(h, w), mode="bilinear").clamp(0, 1)
    log_depth = net(x.to(_net_dtype(net, x.dtype))).float()  # (B, 1, h', w')
    inverse = torch.exp(-log_depth)  # 1 / exp(log depth), in float32 to avoid overflow
    depth = robust_minmax(inverse)
    return _resize(depth, (h, w), mode="bilinear").clamp(0, 1).to(image.dtype)


def _is_depth_anything(state: Mapping[str, torch.Tensor]) -> bool:
    return "pretrained.pos_embed" in state and "depth_head.scratch.output_conv1.weight" in state


def _is_megadepth(state: Mapping[str, torch.Tensor]) -> bool:
    stem = state.get("0.weight")
    return (
        "3.0.0.1.0.0.weight" in state and stem is not None and tuple(stem.shape) == (128, 3, 7, 7)
    )


@dataclass(frozen=True)
class DepthArchitecture:
    """One depth network this tool can load and run: how to build it (None: built from the
    checkpoint's own config), how to recognise its state dict, and the adapter that turns its
    native output into normalised inverse depth."""

    name: str  # the registry's `architecture` value
    kind: str  # DepthEstimator.kind
    build: Callable[[], nn.Module] | None
    detect: Callable[[Mapping[str, torch.Tensor]], bool] | None
    adapter: Callable[[nn.Module, torch.Tensor], torch.Tensor]


# The table every loader and the estimator use (spandrel-style: name, constructor, detect,
# adapter). SmallDepthNet is recognised by the config in its safetensors metadata instead.
DEPTH_ARCHITECTURES = {
    a.name: a
    for a in (
        DepthArchitecture("SmallDepthNet", "small", None, None, small_depth),
        DepthArchitecture(
            "DepthAnythingV2Small",
            "depth-anything-v2",
            DepthAnythingV2Small,
            _is_depth_anything,
            _depth_anything,
        ),
        DepthArchitecture(
            "MegaDepthHourglass", "megadepth", MegaDepthHourglass, _is_megadepth, _megadepth
        ),
    )
}
# kind -> function(net, image01) -> normalised inverse depth.
ADAPTERS = {a.kind: a.adapter for a in DEPTH_ARCHITECTURES.values()}


def detect_architecture(state: Mapping[str, torch.Tensor]) -> DepthArchitecture | None:
    """The architecture whose detector recognises this state dict, if any."""
    for arch in DEPTH_ARCHITECTURES.values():
        if arch.detect is not None and arch.detect(state):
            return arch
    return None
