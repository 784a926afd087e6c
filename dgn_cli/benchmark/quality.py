"""PSNR / SSIM over a test split and the depth ablation (the paper's Table IX), for
`dgn benchmark --dataset`.

    dataset, reference = open_dataset("gopro", "GOPRO_Large/", frames=1)
    result = evaluate(engine, dataset, indices, baseline=baseline_engine)

Metrics: `dgn_cli.metrics` (RGB, 0-255, outputs rounded to 8-bit levels as a saved PNG would
be; PSNR over all pixels and channels; SSIM with an 11x11 Gaussian window, sigma 1.5, K1 0.01,
K2 0.03, data range 255, per RGB channel over the valid region, then averaged). Every number is
computed per image, then averaged over the images (the GOPRO convention), by the evaluation
loop training validation shares (`dgn_cli.evaluation`).

Rows, always in this order (absent rows are listed in "skipped" with the reason):
- "blurry input": the blurred centre frame itself (identity), the floor.
- "no depth (baseline)": the no-depth baseline checkpoint (variant "baseline").
- "initial depth": the DGN with its refinement branch bypassed, D_r := D_b, where D_b is the
  estimator's depth of the blurred frame (`Engine.initial_depth`, as `dgn deblur-image`), or
  for a video DGN with `--video-depth parallax` the window's motion parallax.
- "refined depth": the DGN as it is used, D_r = D_b + G_D(D_b, B): this is the DGN's result.
- "reference depth": the DGN with D_r := the reference depth (the dataset's depth/ maps, exact
  for the synthetic split; else the estimator's depth of the SHARP frame).
The bypass rows evaluate the same trained weights with another D_r (no retraining), which
tells how much each depth would give this model; the paper trains a model per row.

Depth thirds: each image's pixels split by the reference depth (normalised inverse depth,
1 = nearest): "near" d >= 2/3, "middle" 1/3 <= d < 2/3, "far" d < 1/3 (fixed thresholds, so a
bin means the same parallax everywhere; a bin may be empty in an image). PSNR per bin is
10 log10(255^2 / MSE over the bin's pixels and channels), averaged over the images whose bin
is not empty ("images_near" etc. say how many).

Depth error: mean absolute error and RMSE of D_b and of D_r against the reference depth, both in
[0, 1], averaged over images.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from dgn_cli import metrics
from dgn_cli.data.augment import jpeg_roundtrip
from dgn_cli.data.datasets import PairedFolderDataset
from dgn_cli.data.gopro import discover
from dgn_cli.engine import Engine, build_engine
from dgn_cli.errors import CheckpointError, DgnError, InputError
from dgn_cli.evaluation import Means, image_scores, score_items
from dgn_cli.progress import Progress
from dgn_cli.tensors import centre_frame, to_signed, to_unit

ROW_BLURRY = "blurry input"
ROW_BASELINE = "no depth (baseline)"
ROW_INITIAL = "initial depth"
ROW_REFINED = "refined depth"
ROW_REFERENCE = "reference depth"
ROWS = (ROW_BLURRY, ROW_BASELINE, ROW_INITIAL, ROW_REFINED, ROW_REFERENCE)
THIRDS = ("near", "middle", "far")
DEPTH_ERROR = "depth error"  # the group of the per-image depth errors (not a row)
NEAR, FAR = 2 / 3, 1 / 3
DEFAULT_SYNTH_ROOT = Path("data/synth")


# ------------------------------------------------------------------------------- data


def synth_command(root: str | Path) -> str:
    """The exact commands that make the synthetic test split under `root`."""
    return (
        f"`dgn data photos data/photos` (once), then "
        f"`dgn data synth {root} --photos data/photos --split test`"
    )


def open_dataset(
    kind: str, root: str | Path | None, frames: int = 1, split: str = "test"
) -> PairedFolderDataset:
    """The whole-frame, un-augmented `split` of a GOPRO-layout folder ("gopro") or of the
    synthetic split ("synth", root defaults to data/synth). Items without depth/ carry no
    "depth"; `evaluate` then estimates it from the sharp frame."""
    if kind not in ("gopro", "synth"):
        raise DgnError(f"--dataset {kind!r}: use gopro or synth")
    if kind == "gopro" and root is None:
        raise DgnError("--dataset gopro needs --data PATH (a GOPRO-layout folder)")
    root = Path(root) if root is not None else DEFAULT_SYNTH_ROOT
    if kind == "synth" and not (root / split).is_dir():
        raise InputError(
            f"{root / split}: no synthetic {split} split; make it with {synth_command(root)}"
        )
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found")
    discover(root, split)  # a clear error for a folder of the wrong layout
    return PairedFolderDataset(
        root,
        split=split,
        frames=frames,
        crop=None,
        augment=False,
        noise_sigma=0.0,
        require_depth=False,
    )


def select_indices(n: int, limit: int | None) -> list[int]:
    """All of range(n), or `limit` indices spread evenly over it (first and last included),
    so a quick run still sees every part of the split."""
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 1:
        raise DgnError(f"--limit must be at least 1, got {limit}")
    if limit == 1:
        return [0]
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})


# ------------------------------------------------------------------------------- ablation model
def bypass_engine(engine: Engine) -> Engine:
    """`engine`'s DGN (shared, not copied) with its refinement branch bypassed: the depth
    passed in is used as D_r. Same device, precision and tiling."""
    if not engine.dgn.config.uses_depth:
        raise DgnError("the no-depth baseline has no depth to replace")
    cfg = dataclasses.replace(engine.config, refine_depth=False)
    return Engine(cfg, dgn=engine.dgn, depth_estimator=None)


def baseline_engine(engine: Engine, weights: str, frames: int) -> tuple[Engine | None, str | None]:
    """(engine, None) for the no-depth baseline checkpoint `weights`, or (None, why not)."""
    # Same device, precision and tiling; the baseline needs no depth model.
    cfg = dataclasses.replace(engine.config, weights=weights, depth_model=None, refine_depth=True)
    try:
        base = build_engine(cfg)
    except CheckpointError as e:
        return None, f"baseline checkpoint not available ({e}); pass one with --baseline-weights"
    if base.dgn.config.uses_depth:
        return None, f"{weights!r} is a {base.dgn.config.variant!r} DGN, not the no-depth baseline"
    if base.dgn.config.frames != frames:
        return None, (
            f"{weights!r} takes {base.dgn.config.frames} frame(s), the evaluated DGN {frames}"
        )
    return base, None


# ------------------------------------------------------------------------------- metrics
def to_255(image01: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1] -> 0-255 float64, rounded to 8-bit levels (metrics.to_255)."""
    return metrics.to_255(to_signed(image01.double()))


def depth_thirds(depth: torch.Tensor) -> dict[str, torch.Tensor]:
    """Boolean (H, W) masks "near" / "middle" / "far" of a (..., H, W) depth in [0, 1]."""
    d = depth.reshape(depth.shape[-2:])
    return {"near": d >= NEAR, "middle": (d >= FAR) & (d < NEAR), "far": d < FAR}


def psnr_by_thirds(
    pred255: torch.Tensor, target255: torch.Tensor, depth: torch.Tensor
) -> dict[str, float | None]:
    """PSNR (dB) over the pixels of each depth third (None for an empty third).
    pred255 / target255: (1, 3, H, W) in 0-255; depth (…, H, W) in [0, 1]."""
    err = (pred255.double() - target255.double()).pow(2).sum(dim=1)[0]  # (H, W), channels summed
    out: dict[str, float | None] = {}
    for name, mask in depth_thirds(depth).items():
        count = int(mask.sum())
        out[name] = (
            None if count == 0 else metrics.psnr_from_mse(float(err[mask].sum()) / (3 * count))
        )
    return out


def _score(pred01: torch.Tensor, sharp255: torch.Tensor, depth_ref: torch.Tensor | None) -> dict:
    pred255 = to_255(pred01)
    score: dict[str, float | None] = {**image_scores(pred255, sharp255)}
    if depth_ref is not None:
        score.update(
            {f"psnr_{k}": v for k, v in psnr_by_thirds(pred255, sharp255, depth_ref).items()}
        )
    return score


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two maps (any equal shapes), 0.0 when either is flat."""
    x, y = a.double().flatten(), b.double().flatten()
    x, y = x - x.mean(), y - y.mean()
    denom = float(x.norm() * y.norm())
    return float(x @ y) / denom if denom > 0 else 0.0


def depth_scores(depth: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """{"mae", "rmse", "pearson"} of one depth map against the reference (equal shapes)."""
    diff = (depth.double() - reference.double()).abs()
    return {
        "mae": float(diff.mean()),
        "rmse": float(diff.pow(2).mean().sqrt()),
        "pearson": pearson(depth, reference),
    }


# ------------------------------------------------------------------------------- evaluation
@dataclass
class _Item:
    name: str
    frames: torch.Tensor  # (1, 3F, H, W) [0, 1]
    centre: torch.Tensor  # (1, 3, H, W) [0, 1]
    sharp255: torch.Tensor  # (1, 3, H, W) 0-255
    depth: torch.Tensor | None  # (1, 1, H, W) [0, 1] reference depth from the dataset


def _load(dataset: PairedFolderDataset, i: int, jpeg: int | None = None) -> _Item:
    item = dataset[i]
    frames = to_unit(item["blur"].unsqueeze(0))
    if jpeg is not None:  # what a user has: the blurred frames as a camera or encoder saved them
        hwc = jpeg_roundtrip(frames[0].permute(1, 2, 0).numpy(), jpeg)
        frames = torch.from_numpy(hwc).permute(2, 0, 1).unsqueeze(0)
    depth = item["depth"].unsqueeze(0) if "depth" in item else None
    return _Item(
        name=dataset.frame_name(i),
        frames=frames,
        centre=centre_frame(frames, dataset.frames),
        sharp255=metrics.to_255(item["sharp"].unsqueeze(0)),
        depth=depth,
    )


def evaluate(
    engine: Engine,
    dataset: PairedFolderDataset,
    indices: list[int],
    *,
    ablation: bool = True,
    baseline: Engine | None = None,
    baseline_note: str | None = None,
    progress: Progress | None = None,
    jpeg: int | None = None,
) -> dict:
    """Evaluate every row of the module docstring on dataset[indices]; with `jpeg` every row
    (the blurry input's too) sees the blurred frames JPEG-compressed at that quality first.

    Returns {"quality": [{"name", "psnr", "ssim", "psnr_near", "psnr_middle", "psnr_far",
    "images", "images_near", ...}], "per_image": [{"name", "rows": {row: score}}],
    "depth_error": {...} or None, "reference_depth": str, "skipped": [{"name", "reason"}],
    "images": n}.
    """
    dgn = engine.dgn
    if dgn is None:
        raise DgnError("the benchmark needs a DGN; this engine was built without one")
    if dataset.frames != dgn.config.frames:
        raise DgnError(
            f"the dataset gives {dataset.frames} frame(s) per item, "
            f"the DGN takes {dgn.config.frames}"
        )
    uses_depth = dgn.config.uses_depth
    skipped: list[dict] = []
    bypass = bypass_engine(engine) if uses_depth and ablation else None
    if not uses_depth:  # the evaluated model is itself the baseline
        baseline, baseline_note = engine, None
    elif not ablation:
        skipped += [{"name": r, "reason": "--no-ablation"} for r in (ROW_INITIAL, ROW_REFERENCE)]
        baseline, baseline_note = None, "--no-ablation"
    if baseline is None:
        skipped.append({"name": ROW_BASELINE, "reason": baseline_note or "no baseline checkpoint"})

    # constant_rmse: the best per-frame constant's RMSE (the reference's own spread), the bar an
    # estimator must clear to carry any depth signal at all.
    # *_pearson: per-frame correlation with the reference, blind to level and range (which a
    # frame-normalised depth cannot be sure of); 0 for a flat map, which carries no signal.
    depth_errors = (
        "initial_mae",
        "refined_mae",
        "initial_rmse",
        "refined_rmse",
        "constant_rmse",
        "initial_pearson",
        "refined_pearson",
    )
    means = {row: Means() for row in ROWS} | {DEPTH_ERROR: Means(depth_errors)}
    exact_depth = 0

    def score_item(i: int) -> dict[str, dict[str, float | None]]:
        """Every row's score of image i, and the depth errors."""
        nonlocal exact_depth
        item = _load(dataset, i, jpeg)
        if item.depth is not None:
            exact_depth += 1
            d_ref = item.depth
        elif uses_depth:
            d_ref = engine.estimate_depth(_sharp01(item))
        else:
            d_ref = None
        rows = {ROW_BLURRY: _score(item.centre, item.sharp255, d_ref)}
        if baseline is not None:
            out, _ = baseline.restore(item.frames)
            rows[ROW_BASELINE] = _score(out, item.sharp255, d_ref)
        if not uses_depth:
            return rows
        d_init = engine.initial_depth(item.frames)  # the estimator's, or the window's parallax
        if bypass is not None:
            out, _ = bypass.restore(item.frames, d_init, return_depth=False)
            rows[ROW_INITIAL] = _score(out, item.sharp255, d_ref)
        out, d_refined = engine.restore(item.frames, d_init)
        rows[ROW_REFINED] = _score(out, item.sharp255, d_ref)
        if bypass is not None:
            out, _ = bypass.restore(item.frames, d_ref, return_depth=False)
            rows[ROW_REFERENCE] = _score(out, item.sharp255, d_ref)
        errors = {}
        for key, d in (("initial", d_init), ("refined", d_refined)):
            errors.update({f"{key}_{k}": v for k, v in depth_scores(d, d_ref).items()})
        errors["constant_rmse"] = float(d_ref.double().std(correction=0))
        return {**rows, DEPTH_ERROR: errors}

    per_item = score_items(indices, score_item, means, progress)
    per_image = [
        {"name": dataset.frame_name(i), "rows": {r: s for r, s in scores.items() if r in ROWS}}
        for i, scores in zip(indices, per_item, strict=True)
    ]

    quality = []
    for row in ROWS:
        row_means = means[row]
        if row_means.items == 0:
            continue
        entry: dict = {"name": row}
        for key in ("psnr", "ssim"):
            entry[key] = row_means.mean(key)
        for third in THIRDS:
            entry[f"psnr_{third}"] = row_means.mean(f"psnr_{third}")
            entry[f"images_{third}"] = row_means.count(f"psnr_{third}")
        entry["images"] = row_means.items
        quality.append(entry)

    if exact_depth == len(indices):
        reference = "the dataset's depth/ maps"
    elif exact_depth == 0 and uses_depth:
        reference = f"estimated from the sharp frame by {engine.depth_estimator.name}"
    elif exact_depth == 0:
        reference = "none (no depth/ maps; the baseline needs no estimator)"
    else:
        reference = f"depth/ maps for {exact_depth} images, the rest estimated from the sharp frame"
    depth_error = None
    if uses_depth and per_image:
        depth_error = {k: means[DEPTH_ERROR].mean(k) for k in depth_errors}
    return {
        "quality": quality,
        "per_image": per_image,
        "depth_error": depth_error,
        "reference_depth": reference,
        "skipped": skipped,
        "images": len(per_image),
    }


def _sharp01(item: _Item) -> torch.Tensor:
    return (item.sharp255 / 255.0).float()


def finite_or_none(value: float | None) -> float | None:
    """JSON has no inf/NaN: identical images (PSNR inf) become None."""
    return value if value is not None and math.isfinite(value) else None
