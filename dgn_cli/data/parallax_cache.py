"""Initial depth D_b from motion parallax for training the video DGN (`--depth-model parallax`).

Why: at inference `dgn deblur-video --video-depth parallax` gives the video DGN a D_b read from
the window's motion (dgn_cli.parallax_depth; Pearson +0.69 with the exact depth on the
synthetic video split, against +0.01 for the small estimator). A DGN trained on other D_b
(the exact depth degraded like an estimator's) does not turn it into sharper frames (-0.02 dB,
BENCHMARKS "stretch 9"), so the video DGN can be trained on the very maps it will get.

The map of frame t is computed once from the whole blurred window t-2..t+2 (reflected at the
ends, as the dataset does), before cropping: the fit needs the whole frame's motion. It is
cached as a 16-bit PNG beside the estimator caches (gopro.DepthCache, kind "depth_init"). A
window without parallax (a still camera, a pure pan) gets a flat map at 0: no depth cue, which
is what the normalisation gives the most common depth.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dgn_cli.data.gopro import DepthCache, Sequence, open_depth_cache, read_rgb01
from dgn_cli.data.synth import depth_to_u16, write_png
from dgn_cli.fsutil import write_text_atomic
from dgn_cli.tensors import centre_index, reflect_index

# The cache folder's name; bump the version when parallax_depth's maps change, so old caches
# are not mixed with new ones.
CACHE_KEY = "parallax-v1"


def window_depth(seq: Sequence, t: int, frames: int) -> tuple[np.ndarray, bool]:
    """((H, W) float32 [0, 1] parallax depth of frame t from its blurred window, whether the
    window had parallax); without parallax the map is flat at 0."""
    from dgn_cli.parallax_depth import window_parallax_depth

    half = centre_index(frames)
    window = [read_rgb01(seq.blur[reflect_index(t + o, len(seq))]) for o in range(-half, half + 1)]
    x = torch.from_numpy(np.concatenate(window, axis=2)).permute(2, 0, 1)[None].float()
    depth = window_parallax_depth(x, frames)
    if depth is None:
        return np.zeros(window[half].shape[:2], np.float32), False
    return depth[0, 0].numpy(), True


def prepare_parallax_cache(
    root: Path,
    split: str,
    seqs: list[Sequence],
    frames: int,
    cache_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[DepthCache, int]:
    """Compute (once) the missing "depth_init" maps of every frame from its `frames`-frame
    window. Returns (cache, computed). The cache folder records how many windows had no
    parallax (flat maps) in parallax.json."""
    cache = open_depth_cache(root, split, f"{CACHE_KEY}-{frames}", cache_dir)
    todo = [(seq, t) for seq in seqs for t in range(len(seq))]
    todo = [(seq, t) for seq, t in todo if not cache.path(seq, "depth_init", t).exists()]
    flat = 0
    for n, (seq, t) in enumerate(todo):
        depth, has_parallax = window_depth(seq, t, frames)
        flat += not has_parallax
        # atomic: an interrupted run leaves no half-written map for the next run to trust
        write_png(cache.path(seq, "depth_init", t), depth_to_u16(depth))
        if progress is not None:
            progress(n + 1, len(todo))
    if todo:
        meta = {"source": "parallax", "key": CACHE_KEY, "frames": frames,
                "computed": len(todo), "flat": flat}  # fmt: skip
        write_text_atomic(cache.folder / "parallax.json", json.dumps(meta) + "\n")
    return cache, len(todo)
