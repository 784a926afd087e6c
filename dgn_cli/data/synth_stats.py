"""Statistics of a rendered synthetic split: how much blur it holds and where.

    blur extent    percentiles of the per-pixel blur extent (pixels, from extent/ maps) and
                   the fraction of pixels blurred under 2 px
    identity PSNR  the blurry input scored against the sharp frame, overall and per depth third
                   (near >= 2/3 > middle >= 1/3 > far, on the reference depth), the number a
                   deblurring model has to beat

GOPRO, the paper's data, blurs nearly the whole frame (blurry input ~25.6 dB); these numbers
say how close a synthetic split comes to that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dgn_cli.data.gopro import discover, read_depth_raw, read_rgb_raw, to01
from dgn_cli.data.synth import extent_from_u16
from dgn_cli.metrics import psnr_from_mse

PERCENTILES = (10, 25, 50, 75, 90, 99)
NEAR, FAR = 2 / 3, 1 / 3


def _psnr(sq_err_sum: float, count: int) -> float | None:
    return None if count == 0 else psnr_from_mse(sq_err_sum / count)


def split_stats(root: str | Path, split: str, limit: int | None = None, stride: int = 4) -> dict:
    """Blur-extent distribution and identity PSNR of root/split (centre frames of the first
    `limit` sequences; extent percentiles on every `stride`-th pixel). Splits rendered before
    extent maps existed report the PSNR part only."""
    _, sequences = discover(Path(root), split)
    sequences = sequences[:limit] if limit else sequences
    extents: list[np.ndarray] = []
    sums = {k: [0.0, 0] for k in ("all", "near", "middle", "far")}
    frame_psnr = []
    for seq in sequences:
        t = len(seq) // 2
        blur = read_rgb_raw(seq.blur[t]).astype(np.float64)
        sharp = read_rgb_raw(seq.sharp[t]).astype(np.float64)
        err = ((blur - sharp) ** 2).sum(axis=2)  # (H, W), channels summed
        frame_psnr.append(_psnr(float(err.sum()), err.size * 3))
        sums["all"][0] += float(err.sum())
        sums["all"][1] += err.size * 3
        if seq.depth is not None:
            d = to01(read_depth_raw(seq.depth[t]))
            for name, mask in (("near", d >= NEAR), ("middle", (d >= FAR) & (d < NEAR)),
                               ("far", d < FAR)):  # fmt: skip
                sums[name][0] += float(err[mask].sum())
                sums[name][1] += int(mask.sum()) * 3
        extent_path = seq.sharp[t].parent.parent / "extent" / seq.sharp[t].name
        if extent_path.is_file():
            extents.append(extent_from_u16(read_depth_raw(extent_path))[::stride, ::stride].ravel())
    stats: dict = {
        "frames": len(sequences),
        "identity_psnr": {k: _psnr(*v) for k, v in sums.items()},
        "identity_psnr_per_frame_mean": float(np.mean(frame_psnr)) if frame_psnr else None,
    }
    if extents:
        pooled = np.concatenate(extents)
        stats["extent_px"] = {
            f"p{q}": round(float(np.percentile(pooled, q)), 2) for q in PERCENTILES
        }
        stats["extent_px"]["max"] = round(float(pooled.max()), 2)
        stats["extent_px"]["fraction_under_2px"] = round(float((pooled < 2).mean()), 4)
    return stats
