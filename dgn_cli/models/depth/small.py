"""The project's own small monocular depth network (trained on synthetic data with exact depth).

A compact U-Net: four scales (widths 16/32/64/128 by default), two 3x3 convs per scale,
bilinear upsampling with concatenated skips, sigmoid output. It predicts the project's depth
convention directly: normalised inverse depth in [0, 1], 1 = nearest.

`input_scale` < 1 makes the network look at a downscaled copy of the frame (area filter) and
upsample its answer back (bilinear), as the public monocular estimators do at their fixed input
size: depth is a whole-scene property, and at 1/4 scale the same receptive field sees 16x the
area (the cue here, how far each layer smears, survives the downscale). It is part of the
config, so training crops and inference frames are always seen at the same scale.

The head starts at zero, so an untrained net says 0.5 everywhere: with the default
initialisation the first Adam steps at lr 1e-3 drove the logits far negative, the sigmoid
saturated at 0 and no gradient came back (measured: the shipped stretch-1 estimator had
collapsed to a constant 0.224, correlation with the exact depth 0.00).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dgn_cli.jsonconfig import JsonConfig
from dgn_cli.tensors import pad_to_multiple, to_signed


@dataclass(frozen=True)
class SmallDepthConfig(JsonConfig):
    widths: tuple[int, ...] = (16, 32, 64, 128)
    slope: float = 0.2
    input_scale: float = 1.0  # the net runs on the input resized by this factor (0, 1]
    # relative: trained with the scale-and-shift-invariant loss, so only the shape of its
    # whole-frame answer means anything; the estimator's "small" adapter min-max normalises it
    # per frame (estimator.small_depth).
    relative: bool = False

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if not 0.0 < float(self.input_scale) <= 1.0:
            raise ValueError(f"input_scale must be in (0, 1], got {self.input_scale}")


def _double_conv(in_chs: int, out_chs: int, slope: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, 3, padding=1),
        nn.LeakyReLU(slope),
        nn.Conv2d(out_chs, out_chs, 3, padding=1),
        nn.LeakyReLU(slope),
    )


class SmallDepthNet(nn.Module):
    """(B, 3, H, W) RGB in [0, 1], any H x W -> (B, 1, H, W) normalised inverse depth in [0, 1]."""

    def __init__(self, cfg: SmallDepthConfig | None = None):
        super().__init__()
        self.config = cfg or SmallDepthConfig()
        widths, slope = self.config.widths, self.config.slope
        self.down = nn.ModuleList()
        in_chs = 3
        for w in widths:
            self.down.append(_double_conv(in_chs, w, slope))
            in_chs = w
        self.up = nn.ModuleList(
            _double_conv(widths[i + 1] + widths[i], widths[i], slope)
            for i in reversed(range(len(widths) - 1))
        )
        self.head = nn.Conv2d(widths[0], 1, 3, padding=1)
        nn.init.zeros_(self.head.weight)  # start at 0.5, away from saturation (see docstring)
        nn.init.zeros_(self.head.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        s = float(self.config.input_scale)
        if s == 1.0:
            return self._predict(image)
        size = (max(1, round(h * s)), max(1, round(w * s)))
        depth = self._predict(F.interpolate(image, size=size, mode="area"))
        return F.interpolate(depth, size=(h, w), mode="bilinear", align_corners=False)

    def _predict(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        multiple = 2 ** (len(self.down) - 1)
        x = pad_to_multiple(to_signed(image), multiple)
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.avg_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return torch.sigmoid(self.head(x))[..., :h, :w]
