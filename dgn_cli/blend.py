"""Strength and depth-aware masks: how much of the deblurred result each pixel gets.

    ctl = Control(strength=0.7, keep="background")         # threshold None = automatic
    image, mask = apply(blurred, restored, depth, ctl)      # (1,3,H,W) [0,1], (1,1,H,W) or None

Pure functions on CPU tensors, shared by the engine, the Python API and the commands.

- Blending happens in linear light: both images are decoded from sRGB, mixed as
  w * restored + (1 - w) * input, and encoded again. Mixing the encoded values would darken
  every edge the network sharpened (the classic gamma-blend halo). Where w is exactly 0 the
  input comes back bit for bit, where it is exactly 1 the result does.
- w = strength * mask. The mask comes from the depth (normalised inverse depth, 1 = nearest):
  keep="background" keeps the input where the depth says far (a portrait's bokeh, a
  landscape's haze) and deblurs what is near; keep="foreground" is the other way round (the
  out-of-focus branch in front of the lens stays as shot). The split is a smoothstep ramp of
  half-width `softness` (in depth units) around `threshold`, then feathered with a Gaussian
  of `feather` px (default 0.3 % of the long side, at least 1 px), so no edge is visible
  where the depth map has a hard step. Values within 1/1024 of 0 or 1 snap to 0 or 1, so the
  kept part is exact.
- threshold None = automatic: Otsu's split of the depth histogram (the valley between the
  subject's and the background's depths; 0.5 if the map is flat).
- Video: `temporal_depth` replaces the frame's estimator depth by its mean over the same
  five-frame window the DGN reads (inside the shot), keeping the DGN's per-frame refinement,
  so the mask does not flicker; being a function of the window alone, it is the same whether
  a frame is restored in one run, after --resume or on another shard.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

KEEP = ("background", "foreground")
DEFAULT_SOFTNESS = 0.08
FEATHER_FRACTION = 0.003
SNAP = 1 / 1024


@dataclass(frozen=True)
class Control:
    """strength in [0, 1]; keep None | "background" | "foreground"; threshold None (auto) or
    in [0, 1]; softness: ramp half-width in depth units; feather: Gaussian sigma in px
    (None = FEATHER_FRACTION of the long side)."""

    strength: float = 1.0
    keep: str | None = None
    threshold: float | None = None
    softness: float = DEFAULT_SOFTNESS
    feather: float | None = None

    def __post_init__(self):
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {self.strength}")
        if self.keep is not None and self.keep not in KEEP:
            raise ValueError(f"keep must be one of {KEEP} or None, got {self.keep!r}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.softness < 0 or (self.feather is not None and self.feather < 0):
            raise ValueError("softness and feather must be >= 0")

    @property
    def uses_mask(self) -> bool:
        return self.keep is not None

    @property
    def active(self) -> bool:
        """False when the result is the network's output unchanged."""
        return self.uses_mask or self.strength < 1.0

    def describe(self) -> dict:
        return {
            "strength": self.strength,
            "keep": self.keep,
            "threshold": "auto" if self.threshold is None else self.threshold,
            "softness": self.softness,
            "feather": "auto" if self.feather is None else self.feather,
        }


# ------------------------------------------------------------------------------ colour
def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded [0, 1] -> linear light (IEC 61966-2-1)."""
    x = x.clamp(0, 1)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055)


# ------------------------------------------------------------------------------ masks
def otsu_threshold(depth: torch.Tensor, bins: int = 256) -> float:
    """The depth that best splits the histogram into two classes (Otsu 1979); 0.5 if flat."""
    hist = torch.histc(depth.float().flatten(), bins=bins, min=0.0, max=1.0).double()
    total = hist.sum()
    if total == 0:
        return 0.5
    p = hist / total
    centres = (torch.arange(bins, dtype=torch.float64) + 0.5) / bins
    w0 = p.cumsum(0)
    m0 = (p * centres).cumsum(0)
    mean = m0[-1]
    between = (mean * w0 - m0) ** 2 / (w0 * (1 - w0)).clamp_min(1e-12)
    between[(w0 <= 0) | (w0 >= 1)] = 0
    if float(between.max()) <= 0:
        return 0.5
    # Empty bins between the two classes give a plateau of equal scores: take its middle.
    best = torch.nonzero(between >= between.max() * (1 - 1e-9)).flatten()
    k = (int(best[0]) + int(best[-1])) / 2
    return float((k + 1) / bins)  # the upper edge of the last "far" bin


def _smoothstep(lo: float, hi: float, x: torch.Tensor) -> torch.Tensor:
    if hi <= lo:
        return (x >= lo).float()
    t = ((x - lo) / (hi - lo)).clamp(0, 1)
    return t * t * (3 - 2 * t)


def feather_sigma(control: Control, h: int, w: int) -> float:
    if control.feather is not None:
        return control.feather
    return max(1.0, FEATHER_FRACTION * max(h, w))


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a (1, 1, H, W) map, edges replicated; sigma 0 = unchanged."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    h, w = x.shape[-2:]
    ry, rx = min(radius, h - 1), min(radius, w - 1)  # replicate pad cannot exceed the side
    ky, kx = k[radius - ry : radius + ry + 1], k[radius - rx : radius + rx + 1]
    x = F.pad(x, (rx, rx, ry, ry), mode="replicate")
    x = F.conv2d(x, (kx / kx.sum()).view(1, 1, 1, -1))
    return F.conv2d(x, (ky / ky.sum()).view(1, 1, -1, 1))


def depth_mask(depth: torch.Tensor, control: Control) -> torch.Tensor:
    """(1, 1, H, W) depth in [0, 1] (1 = nearest) -> (1, 1, H, W) weight of the deblurred
    image in [0, 1] (1 = deblurred, 0 = input kept); all ones when no mask is asked for."""
    d = depth.float()
    if not control.uses_mask:
        return torch.ones_like(d)
    t = otsu_threshold(d) if control.threshold is None else control.threshold
    s = control.softness
    near = _smoothstep(t - s, t + s, d)  # 1 where nearer than the threshold
    mask = near if control.keep == "background" else 1 - near
    mask = gaussian_blur(mask, feather_sigma(control, *d.shape[-2:]))
    mask = torch.where(mask < SNAP, 0.0, torch.where(mask > 1 - SNAP, 1.0, mask))
    return mask.clamp_(0, 1)


def temporal_depth(
    refined: torch.Tensor, initial: torch.Tensor, window_initial: Sequence[torch.Tensor]
) -> torch.Tensor:
    """A frame's depth for its mask, steadied in time: the DGN's refinement of this frame
    (refined - initial) on top of the mean estimator depth over the frame's window."""
    if len(window_initial) <= 1:
        return refined
    mean = torch.stack([d.float() for d in window_initial]).mean(0)
    return (refined.float() - initial.float() + mean).clamp_(0, 1)


# ------------------------------------------------------------------------------ blending
def blend(
    original: torch.Tensor, restored: torch.Tensor, weight: torch.Tensor | float
) -> torch.Tensor:
    """Mix two sRGB [0, 1] images in linear light: weight 1 = restored, 0 = original (exact
    at both ends). `weight` is a number or a (1, 1, H, W) map."""
    if not torch.is_tensor(weight):
        if weight >= 1:
            return restored
        if weight <= 0:
            return original.clone()
        weight = torch.tensor(float(weight))
    w = weight.float()
    mixed = linear_to_srgb(torch.lerp(srgb_to_linear(original), srgb_to_linear(restored), w))
    out = torch.where(w >= 1, restored, mixed)
    return torch.where(w <= 0, original, out)


def apply(
    original: torch.Tensor,
    restored: torch.Tensor,
    depth: torch.Tensor | None,
    control: Control,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(the blended image, the mask or None when no mask was asked for). `depth` is the depth
    the mask is made from (the refined depth where there is one); needed only for a mask."""
    if not control.active:
        return restored, None
    mask = None
    weight: torch.Tensor | float = control.strength
    if control.uses_mask:
        if depth is None:
            raise ValueError("a depth mask needs a depth map")
        mask = depth_mask(depth, control)
        weight = mask * control.strength
    return blend(original, restored, weight), mask
