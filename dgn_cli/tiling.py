"""Tile plans and blending weights: pure functions, no torch modules, no I/O.

A plan covers an H x W image with overlapping tiles of at most `tile` px (plus up to
`align - 1` px on the last row/column) that overlap their neighbours by at least `overlap`
px. Tile origins are multiples of `align` (4 for the DGN: two stride-2 stages), so each tile
sees the same down-sampling grid as the whole image and the last tile ends exactly on the
image border, where the network pads the same way it pads the whole image.

Blending: in each overlap between two neighbours the left (top) tile's weight falls from 1 to
0 along a raised cosine `ramp` = overlap // 2 px wide, centred in the overlap; the right
(bottom) tile's weight rises as 1 minus it. So each tile's outermost (overlap - ramp) / 2
>= overlap / 4 px on a side it shares are context only (weight 0): those are the pixels where
the zero padding at the tile's cut edge changes the network's output. The 2-D weight is the
outer product of the row and column weights, and the weights of all tiles sum to 1 at every
pixel (a partition of unity), so no normalisation buffer is needed. Image borders get weight
1: they are borders for the whole-image run too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import torch

ALIGN = 4


class Tile(NamedTuple):
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0


def _align_down(v: int, align: int) -> int:
    return v - v % align


def plan_axis(length: int, tile: int, overlap: int, align: int = ALIGN) -> list[tuple[int, int]]:
    """Spans (start, end) covering [0, length): starts are multiples of `align`, neighbours
    overlap by >= `overlap` px, the last span ends at `length`. `tile` <= 0 or >= `length`
    gives one span. Needs 0 <= overlap <= tile // 2 (so two ramps never meet in one tile)."""
    if length <= 0:
        raise ValueError(f"length must be positive, got {length}")
    if tile <= 0 or tile >= length:
        return [(0, length)]
    if not 0 <= overlap <= tile // 2:
        raise ValueError(f"overlap must be in [0, tile/2] = [0, {tile // 2}], got {overlap}")
    stride = _align_down(tile - overlap, align)
    if stride <= 0:
        raise ValueError(f"tile {tile} is too small for overlap {overlap} (align {align})")
    last = _align_down(length - tile, align)
    starts = list(range(0, last, stride)) + [last]
    spans = [(s, min(s + tile, length)) for s in starts[:-1]]
    spans.append((last, length))
    return spans


def plan_tiles(height: int, width: int, tile: int, overlap: int, align: int = ALIGN) -> list[Tile]:
    """Row-major tiles for an H x W image (see `plan_axis`)."""
    rows = plan_axis(height, tile, overlap, align)
    cols = plan_axis(width, tile, overlap, align)
    return [Tile(y0, y1, x0, x1) for y0, y1 in rows for x0, x1 in cols]


def _ramp(positions: torch.Tensor, start: float, width: float) -> torch.Tensor:
    """Raised cosine falling from 1 (before `start`) to 0 (after `start + width`)."""
    if width <= 0:
        return (positions < start).float()
    t = ((positions - start) / width).clamp(0, 1)
    return 0.5 * (1 + torch.cos(math.pi * t))


def axis_weights(spans: list[tuple[int, int]], overlap: int) -> list[torch.Tensor]:
    """One 1-D weight vector per span; at every position the weights of all spans sum to 1."""
    ramp = overlap // 2
    weights = []
    for i, (s, e) in enumerate(spans):
        pos = torch.arange(s, e, dtype=torch.float64) + 0.5  # pixel centres
        w = torch.ones(e - s, dtype=torch.float64)
        if i > 0:  # rising edge shared with the previous span
            centre = (s + spans[i - 1][1]) / 2
            w = w * (1 - _ramp(pos, centre - ramp / 2, ramp))
        if i < len(spans) - 1:  # falling edge shared with the next span
            centre = (spans[i + 1][0] + e) / 2
            w = w * _ramp(pos, centre - ramp / 2, ramp)
        weights.append(w)
    return weights


def tile_weights(
    height: int, width: int, tile: int, overlap: int, align: int = ALIGN
) -> Iterator[tuple[Tile, torch.Tensor]]:
    """Each tile with its (1, 1, h, w) float32 blending weight (outer product of the axis
    weights), made one at a time so only one tile's weight exists at once."""
    rows = plan_axis(height, tile, overlap, align)
    cols = plan_axis(width, tile, overlap, align)
    row_w = [w.float() for w in axis_weights(rows, overlap)]
    col_w = [w.float() for w in axis_weights(cols, overlap)]
    for (y0, y1), wy in zip(rows, row_w, strict=True):
        for (x0, x1), wx in zip(cols, col_w, strict=True):
            yield Tile(y0, y1, x0, x1), (wy[:, None] * wx[None, :])[None, None]


def context_margin(overlap: int) -> int:
    """Pixels at a shared tile edge that get weight 0 (pure context): (overlap - ramp) // 2."""
    return (overlap - overlap // 2) // 2


def tile_for_budget(budget_bytes: int, bytes_per_pixel: float, align: int = 32) -> int:
    """Largest square tile side (multiple of `align`) whose activations fit the budget:
    side = floor(sqrt(budget / bytes_per_pixel)), rounded down to `align`."""
    side = int(math.sqrt(max(budget_bytes, 0) / max(bytes_per_pixel, 1e-9)))
    return max(_align_down(side, align), align)
