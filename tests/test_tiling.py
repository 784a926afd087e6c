"""Tile plans and blending weights (pure functions)."""

import pytest
import torch

from dgn_cli import tiling


@pytest.mark.parametrize(
    "h, w, tile, overlap",
    [
        (720, 1280, 256, 64),
        (1000, 333, 256, 64),
        (517, 262, 256, 128),
        (300, 301, 128, 0),
        (64, 64, 256, 64),
        (259, 1031, 200, 100),
    ],
)
def test_weights_partition_of_unity_and_cover(h, w, tile, overlap):
    acc = torch.zeros(1, 1, h, w, dtype=torch.float64)
    for t, weight in tiling.tile_weights(h, w, tile, overlap):
        assert t.y0 % 4 == 0 and t.x0 % 4 == 0  # DGN down-sampling grid kept
        assert weight.shape == (1, 1, t.height, t.width)
        assert weight.min() >= 0 and weight.max() <= 1
        acc[..., t.y0 : t.y1, t.x0 : t.x1] += weight
    assert torch.allclose(acc, torch.ones_like(acc), atol=1e-6)


@pytest.mark.parametrize("length, tile, overlap", [(1280, 256, 64), (721, 256, 64), (999, 300, 96)])
def test_axis_plan_overlaps_and_sizes(length, tile, overlap):
    spans = tiling.plan_axis(length, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == length
    for (s0, e0), (s1, _) in zip(spans[:-1], spans[1:], strict=True):
        assert s1 > s0 and e0 - s1 >= overlap  # neighbours share >= overlap px
    assert all(e - s <= tile + 3 for s, e in spans)


def test_cut_edges_are_context_only():
    """The outer quarter of the overlap at a shared edge has weight 0; image borders weight 1."""
    spans = tiling.plan_axis(1280, 256, 64)
    weights = tiling.axis_weights(spans, 64)
    margin = tiling.context_margin(64)
    assert margin == 16
    first, middle = weights[0], weights[1]
    assert first[0] == 1 and first[-margin:].max() == 0
    assert middle[:margin].max() == 0 and middle[-margin:].max() == 0
    assert weights[-1][-1] == 1


def test_whole_image_when_tile_is_zero_or_large():
    assert tiling.plan_tiles(720, 1280, 0, 64) == [tiling.Tile(0, 720, 0, 1280)]
    assert tiling.plan_tiles(100, 100, 256, 64) == [tiling.Tile(0, 100, 0, 100)]


def test_bad_overlap_rejected():
    with pytest.raises(ValueError, match="overlap"):
        tiling.plan_axis(1000, 128, 100)


def test_tile_for_budget_formula():
    # side = sqrt(budget / bytes_per_px), rounded down to a multiple of 32
    assert tiling.tile_for_budget(1024 * 1024 * 100, 100) == 1024
    assert tiling.tile_for_budget(1000 * 1000 * 100, 100) == 992
