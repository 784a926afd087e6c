"""Tensor conventions every part of dgn shares; one function each, used everywhere.

- Value ranges: the networks work in [-1, 1] (`to_signed`), files and the engine's API in
  [0, 1] (`to_unit` back).
- Frame stacks: F frames of C channels are stacked on the channel axis, (B, C*F, H, W), oldest
  first; the restored frame is the centre one, index F // 2 (`centre_frame`).
- Padding: networks that down-sample need sides that are multiples of 2**levels; inputs are
  padded at the bottom and right by reflection (`pad_to_multiple`), outputs cropped back.
- Indices past a clip's ends reflect about the end frames without repeating them
  (`reflect_index`: -1 -> 1, n -> n - 2), for the video window and the training sequences.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return x * 2 - 1


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] (not clamped: the residual may overshoot)."""
    return (x + 1) / 2


def centre_index(frames: int) -> int:
    """The index of the restored frame in a window of `frames` (odd) frames."""
    return frames // 2


def centre_frame(stack: torch.Tensor, frames: int, channels: int = 3) -> torch.Tensor:
    """(B, channels*frames, H, W) -> the centre frame (B, channels, H, W) (a view)."""
    start = centre_index(frames) * channels
    return stack[:, start : start + channels]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad (..., H, W) at the bottom/right so both sides are multiples of `multiple`.
    Reflection, except where the pad is not smaller than the side (then edge replication)."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if not (pad_h or pad_w):
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def reflect_index(i: int, n: int) -> int:
    """Index i (any integer) reflected into [0, n) without repeating the edge frame."""
    if n <= 1:
        return 0
    period = 2 * (n - 1)
    i = i % period
    return i if i < n else period - i
