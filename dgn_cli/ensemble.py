"""Self-ensemble (geometric test-time augmentation): run the network on flipped and transposed
copies of a tile, undo each transform on the output, and average.

Blur is as likely in any direction, so the DGN is meant to be equivariant to flips and
transposes, but a trained network is only nearly so; averaging its answers over the symmetry
group cancels part of its error (the EDSR "+" models and most restoration benchmarks do the
same). Measured on 6 frames of the handheld test split with the stretch-3 dgn-image: +0.04 dB
with 2 passes, +0.06 with 4, +0.09 with 8 (BENCHMARKS.md), at 2x, 4x, 8x the time.

The passes are the first N elements of the dihedral group of the square, in this order:
identity, left-right flip, up-down flip, both flips (N = 4: every flip), then the same four
after a transpose (N = 8: the whole group, so the ensemble's output is exactly equivariant to
flips and transposes of the input).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

SIZES = (1, 2, 4, 8)


def _flip(t: torch.Tensor, k: int) -> torch.Tensor:
    dims = [d for d, bit in ((-1, 1), (-2, 2)) if k & bit]
    return t.flip(dims) if dims else t


def forward_transform(t: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th group element (0 <= k < 8) applied to (..., H, W)."""
    if k >= 4:
        t = t.transpose(-1, -2)
    return _flip(t, k % 4)


def inverse_transform(t: torch.Tensor, k: int) -> torch.Tensor:
    """Undo `forward_transform(., k)`: flips are their own inverse, then the transpose."""
    t = _flip(t, k % 4)
    return t.transpose(-1, -2) if k >= 4 else t


def check_size(n: int) -> int:
    if n not in SIZES:
        raise ValueError(f"self-ensemble size must be one of {', '.join(map(str, SIZES))}, got {n}")
    return n


def average(
    run: Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor | None]],
    x: torch.Tensor,
    depth: torch.Tensor | None,
    n: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean over the first `n` group elements of run(T x, T depth), each mapped back by T^-1.

    run: (x (B, C, H, W), depth (B, 1, H, W) or None) -> (image, depth or None), both
    (B, c, H, W) in the input's orientation; x, depth transformed alike. n = 1 is one plain
    call. Returns float32 (image, depth or None)."""
    check_size(n)
    if n == 1:
        return run(x, depth)
    image_sum: torch.Tensor | None = None
    depth_sum: torch.Tensor | None = None
    for k in range(n):
        d = forward_transform(depth, k) if depth is not None else None
        image, refined = run(forward_transform(x, k), d)
        image = inverse_transform(image, k).float()
        image_sum = image.clone() if image_sum is None else image_sum.add_(image)
        if refined is not None:
            refined = inverse_transform(refined, k).float()
            depth_sum = refined.clone() if depth_sum is None else depth_sum.add_(refined)
    assert image_sum is not None
    return image_sum.div_(n), (depth_sum.div_(n) if depth_sum is not None else None)
