"""The training and validation data of a recipe: synthetic (rendered on the fly) or a
GOPRO-layout folder; `--synth-render frame` draws crops from a pool of rendered whole frames.

    train_set, val_set = build_datasets(cfg, run, estimator, info)
    pool = build_frame_pool(cfg, run, info, start_step)   # --synth-render frame
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset, Subset

from dgn_cli import distributed
from dgn_cli.data.render_pool import FramePool
from dgn_cli.errors import InputError
from dgn_cli.progress import Progress
from dgn_cli.train.config import NO_ESTIMATOR, PARALLAX_DEPTH, RunOptions, TrainConfig

VAL_SEED_OFFSET = 1_000_003  # synthetic validation draws from its own seed range


def build_datasets(
    cfg: TrainConfig,
    run: RunOptions,
    depth_estimator: nn.Module | None,
    info: distributed.DistInfo | None = None,
    progress: Progress | None = None,
) -> tuple[Dataset, Dataset]:
    """(train, validation) datasets for `cfg.data`.

    synth: SynthDataset rendered on the fly from `cfg.photos` (item i a pure function of
    (seed, i)); validation renders cfg.val_count un-augmented scenes from its own seed range
    (seed + VAL_SEED_OFFSET), so its scenes never occur in training (the photos that texture
    them are shared).
    folder: PairedFolderDataset train split (random crops, paper augmentation), joined by the
    train splits of cfg.extra_data (each read with its own noise setting and blur maps);
    validation is cfg.val_count whole frames evenly spaced over cfg.data's test split.
    --depth-target extent: training items also carry the blur-extent map (the target);
    validation still scores against the reference depth.
    --depth-model parallax: D_b of every frame from its window's motion, computed once and
    cached like the estimator's (data/parallax_cache). Without depth/ folders the frozen
    estimator's depth of the sharp frame is the depth target
    and its depth of the blurred frame is D_b, computed once and cached (rank 0 first, the
    other ranks then read the cache).
    """
    from dgn_cli.data import datasets as data
    from dgn_cli.data.synth import SynthConfig, camera_config

    info = info or distributed.DistInfo()
    if cfg.data == "synth":
        photos = Path(cfg.photos)
        if not photos.is_dir():
            raise InputError(f"{photos}: no such folder of photos for --data synth; pass --photos")
        # A training scene stands for a crop of a 1280x720 frame (as the paper's 256-px GOPRO
        # crops do), so blur keeps its full-frame extent (2-40 px) instead of shrinking with
        # the crop; otherwise the model never sees the blur sizes of the 1280x720 test split.
        # Validation renders whole 1280x720 frames: what the model is used on.
        synth_cfg = SynthConfig(scale_with_size=False)
        if cfg.synth_render == "frame":  # trains on crops of whole frames of this camera
            synth_cfg = camera_config(cfg.synth_camera)
        train_set = data.SynthDataset(
            photos,
            cfg.synth_length,
            frames=cfg.frames,
            size=cfg.crop,
            seed=cfg.seed,
            cfg=synth_cfg,
            cache=cfg.synth_cache,
            jpeg_prob=cfg.jpeg,
            with_extent=cfg.depth_target == "extent",
        )
        val_set = data.SynthDataset(
            photos,
            cfg.val_count,
            frames=cfg.frames,
            size=cfg.frame_size,
            seed=cfg.seed + VAL_SEED_OFFSET,
            augment=False,
            cfg=synth_cfg,
            cache=True,  # the same frames at every validation: rendered once
        )
        return train_set, val_set

    root = Path(cfg.data)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder; --data takes a GOPRO-layout folder or 'synth'")
    extra: dict[str, Any] = {"cache_dir": run.depth_cache, "progress": progress}
    if cfg.task == "baseline":
        extra["require_depth"] = False
    elif cfg.task != "depth" and cfg.depth_model == PARALLAX_DEPTH:
        extra["parallax_depth"] = True
    elif cfg.task != "depth" and cfg.depth_model not in NO_ESTIMATOR:
        extra["depth_estimator"] = depth_estimator

    roots = [root, *(Path(p) for p in cfg.extra_data)]
    for folder in roots[1:]:
        if not folder.is_dir():
            raise InputError(f"{folder}: no such folder (--extra-data takes GOPRO-layout folders)")

    def train_part(k: int, folder: Path) -> Dataset:
        # Sequence names repeat across folders (000000, ...): a shared --depth-cache gets one
        # subfolder per extra folder so their cached maps cannot collide.
        own = dict(extra)
        if k and run.depth_cache is not None:
            own["cache_dir"] = Path(run.depth_cache) / f"extra-{k}"
        return data.PairedFolderDataset(
            folder,
            split="train",
            frames=cfg.frames,
            crop=cfg.crop,
            seed=cfg.seed + k,  # each folder its own crops and augmentation
            cache_frames=cfg.synth_cache,
            crop_bias=cfg.crop_bias,
            jpeg_prob=cfg.jpeg,
            with_extent=cfg.depth_target == "extent",
            **own,
        )

    def make() -> tuple[Dataset, Dataset]:
        parts = [train_part(k, folder) for k, folder in enumerate(roots)]
        train_set = parts[0] if len(parts) == 1 else data.JoinedDataset(parts)
        test_set = data.PairedFolderDataset(
            root, split="test", frames=cfg.frames, crop=None, augment=False, seed=cfg.seed, **extra
        )
        n = len(test_set)
        picks = sorted(
            {round(i * (n - 1) / max(1, cfg.val_count - 1)) for i in range(cfg.val_count)}
        )
        return train_set, Subset(test_set, picks[:n])

    if info.enabled and not info.is_main:
        distributed.barrier()  # let rank 0 fill the depth cache first
        return make()
    sets = make()
    distributed.barrier()
    return sets


def build_frame_pool(
    cfg: TrainConfig, run: RunOptions, info: distributed.DistInfo, start_step: int
) -> FramePool:
    """--synth-render frame: crops of whole 1280x720 frames rendered by `run.workers`
    processes (data/render_pool.py). Each rank renders its own scene stream, and a resumed
    run starts after the scene indices the earlier steps could have used."""
    photos = Path(cfg.photos)
    if not photos.is_dir():
        raise InputError(f"{photos}: no such folder of photos for --data synth; pass --photos")
    return FramePool(
        photos,
        frames=cfg.frames,
        crop=cfg.crop,
        seed=cfg.seed + 7_919 * info.rank,
        camera=cfg.synth_camera,
        size=cfg.frame_size,
        workers=run.workers,
        pool_frames=cfg.pool_frames,
        crops_per_frame=cfg.crops_per_frame,
        crop_bias=cfg.crop_bias,
        start_index=start_step * cfg.batch_size,
        jpeg_prob=cfg.jpeg,
        with_extent=cfg.depth_target == "extent",
    )
