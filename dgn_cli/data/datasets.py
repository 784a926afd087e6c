"""Torch datasets for training and evaluation.

Both datasets return dicts of float32 tensors:
  "blur"  (3 * frames, S, S) in [-1, 1], frames t-2..t+2 stacked in time order for frames = 5;
  "sharp" (3, S, S) in [-1, 1], the sharp centre frame;
  "depth" (1, S, S) in [0, 1], reference depth of the sharp centre frame (1 = nearest);
  "depth_init" (1, S, S) in [0, 1] (PairedFolderDataset with an estimator): the estimator's
  depth of the blurred centre frame;
  "extent" (1, S, S) in pixels (with_extent=True): the renderer's blur extent of the centre
  frame (extent/ maps of `dgn data synth`), the target of `dgn train --depth-target extent`.
Items are pure functions of (seed, index) (and the epoch, for PairedFolderDataset's random
crops), so a trainer can resume bit-exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from dgn_cli.data.augment import (
    Geometric,
    add_noise,
    maybe_jpeg,
    random_crop_box,
    to_tensor_01,
    to_tensor_pm1,
)
from dgn_cli.data.gopro import (
    DepthCache,
    Sequence,
    check_frame_sizes,
    discover,
    prepare_depth_cache,
    read_depth_raw,
    read_rgb_raw,
    to01,
)
from dgn_cli.data.synth import (
    EXTENT_SCALE,
    PhotoBank,
    SynthConfig,
    extent_from_u16,
    render_sequence,
    sample_seed,
)
from dgn_cli.errors import InputError
from dgn_cli.tensors import centre_index, reflect_index


def _check_frames(frames: int) -> None:
    if frames < 1 or frames % 2 == 0:
        raise ValueError(f"frames must be a positive odd number (1 or 5), got {frames}")


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))


class SynthDataset(Dataset):
    """Depth-aware synthetic blur rendered on the fly at size x size.

    Item i renders sequence `sample_seed(seed, i)` (the same scene `dgn data synth --seed seed`
    writes as sequence i). With augment=True it applies the same flips / +-90 degree rotation
    to blur, sharp and depth, drawn from (seed, i, epoch): a cached scene is seen with another
    augmentation every epoch. `size` is a side (square scenes) or (width, height). With
    `jpeg_prob` > 0 that share of the augmented blurred inputs is JPEG-compressed (`maybe_jpeg`).
    No extra noise is added: the renderer already put Gaussian noise (cfg.noise_sigma, 0.01 by
    default) on the blurred frames, and adding it again would double it.
    """

    def __init__(
        self,
        photos_dir: str | Path,
        length: int,
        frames: int = 1,
        size: int | tuple[int, int] = 256,
        seed: int = 0,
        augment: bool = True,
        cfg: SynthConfig | None = None,
        cache: bool = False,
        jpeg_prob: float = 0.0,
        with_extent: bool = False,
    ):
        _check_frames(frames)
        self.bank = PhotoBank(photos_dir)
        self.with_extent = bool(with_extent)
        self.jpeg_prob = float(jpeg_prob)
        self.length, self.frames = int(length), frames
        self.width, self.height = (size, size) if isinstance(size, int) else map(int, size)
        self.seed, self.augment, self.epoch = int(seed), augment, 0
        self.cfg = cfg or SynthConfig()
        # cache=True keeps each rendered scene (uint8 frames + depth, before augmentation) in
        # memory, so a small scene set trained for many epochs is rendered once per process.
        # Items stay a pure function of (seed, i): the cache only skips recomputation.
        self._cache: dict[int, tuple[np.ndarray, ...]] | None = {} if cache else None

    def _render(self, i: int) -> tuple[np.ndarray, ...]:
        """(blur, sharp, depth[, extent]) of scene i, before augmentation."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        w, h, k = self.width, self.height, self.frames
        out = render_sequence(self.bank, sample_seed(self.seed, i), w, h, k, self.cfg)
        c = k // 2
        blur = out["blur"].transpose(1, 2, 0, 3).reshape(h, w, 3 * k)  # frames in time order
        scene = (blur, out["sharp"][c], out["depth"][c])
        if self.with_extent:
            scene += (out["extent"][c].astype(np.float32),)
        if self._cache is not None:
            self._cache[i] = scene
        return scene

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """The scenes stay; their augmentation changes with the epoch."""
        self.epoch = int(epoch)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        blur, sharp, *maps = self._render(i)
        if self.augment:
            rng = _rng(self.seed, i, self.epoch, 0xA06)
            geo = Geometric.draw(rng, square=self.width == self.height)
            blur, sharp, maps = geo(blur), geo(sharp), [geo(m) for m in maps]
            blur = maybe_jpeg(blur, rng, self.jpeg_prob)
        out = {
            "blur": to_tensor_pm1(blur.astype(np.float32) / 255.0),
            "sharp": to_tensor_pm1(sharp.astype(np.float32) / 255.0),
            "depth": to_tensor_01(maps[0]),
        }
        if self.with_extent:
            out["extent"] = to_tensor_01(maps[1])  # pixels, not [0, 1]: the layout is the same
        return out


DEFAULT_NOISE_SIGMA = 0.01  # the paper's training noise, [0, 1] units
CROP_CANDIDATES = 8  # blur-weighted crops: boxes drawn per item, one kept
CROP_SCORE_STRIDE = 8  # ... each scored on every 8th pixel of its extent map


def rendered_noise(root: Path, split: str) -> float:
    """The noise sigma `dgn data synth` already put on the blurred frames of root/split (from
    its synth.json), or 0.0 for any other dataset."""
    meta = root / split / "synth.json"
    if not meta.is_file():
        return 0.0
    try:
        return float(json.loads(meta.read_text())["config"]["noise_sigma"])
    except (ValueError, KeyError, TypeError):
        return 0.0


class PairedFolderDataset(Dataset):
    """Blurred/sharp pairs (or 5-frame windows) from GOPRO, REDS-like or flat folders.

    Item i is frame t of one sequence; with frames = 5 its input is frames t-2..t+2 of that
    sequence (reflected at the ends: t = 0 uses 2, 1, 0, 1, 2). With `crop` the same random
    crop x crop window is taken from every map; with augment=True the same flips / +-90 degree
    rotation follow, then Gaussian noise (sigma `noise_sigma`) on the blurred frames only, then
    JPEG compression of a `jpeg_prob` share of them (`maybe_jpeg`);
    noise_sigma=None (auto) is the paper's 0.01, or 0 for a split rendered by `dgn data synth`
    (its synth.json says the renderer already added noise; adding more would double it).
    All of it is drawn from (seed, i, epoch); call `set_epoch` each epoch. crop=None returns
    whole frames (evaluation).

    Depth: "depth" comes from depth/ when the dataset has it, else from `depth_estimator` on the
    sharp frame; "depth_init" comes from `depth_estimator` on the blurred frame. Both are
    computed once, on full frames, when the dataset is built, and cached as 16-bit PNGs (see
    `dgn_cli.data.gopro`); the estimator is not kept (workers never run it). With
    parallax_depth=True "depth_init" is instead read from each window's motion parallax
    (`dgn_cli.data.parallax_cache`; frames > 1), and "depth" needs depth/. Without depth/ and
    without an estimator the dataset refuses, unless require_depth=False (then items carry no
    "depth", e.g. for the no-depth baseline).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        frames: int = 1,
        crop: int | None = 256,
        augment: bool = True,
        seed: int = 0,
        depth_estimator: nn.Module | None = None,
        cache_dir: str | Path | None = None,
        noise_sigma: float | None = None,
        require_depth: bool = True,
        progress: Callable[[int, int], None] | None = None,
        cache_frames: bool = False,
        crop_bias: float = 0.0,
        parallax_depth: bool = False,
        jpeg_prob: float = 0.0,
        with_extent: bool = False,
    ):
        _check_frames(frames)
        self.root = Path(root)
        self.with_extent = bool(with_extent)
        self.jpeg_prob = float(jpeg_prob)
        self.crop_bias = float(crop_bias)
        self.split, self.frames, self.crop = split, frames, crop
        if noise_sigma is None:
            noise_sigma = 0.0 if rendered_noise(self.root, split) > 0 else DEFAULT_NOISE_SIGMA
        self.augment, self.seed, self.noise_sigma = augment, int(seed), noise_sigma
        self.epoch = 0
        # cache_frames keeps every decoded file (in its own 8/16-bit dtype, ~9 MB per 1280x720
        # training frame) so later epochs crop from memory instead of decoding PNGs again;
        # items are the same with or without it.
        self._frames: dict[tuple[Path, bool], np.ndarray] | None = {} if cache_frames else None
        self.layout, self.sequences = discover(self.root, split)
        self.items = [(si, t) for si, seq in enumerate(self.sequences) for t in range(len(seq))]
        check_frame_sizes(self.sequences)  # up front: before the depth cache or a training step
        if self.with_extent:
            for seq in self.sequences:
                missing = [i for i in range(len(seq)) if not _extent_path(seq, i).is_file()]
                if missing:
                    raise InputError(
                        f"{_extent_path(seq, missing[0])}: no blur-extent map "
                        f"({len(missing)} of {len(seq)} missing in this sequence); the extent "
                        "target needs a split rendered by `dgn data synth`"
                    )
        self.cache: DepthCache | None = None
        self.computed_depth_maps = 0
        if parallax_depth:  # D_b from each window's motion (data/parallax_cache)
            from dgn_cli.data.parallax_cache import prepare_parallax_cache

            self.cache, self.computed_depth_maps = prepare_parallax_cache(
                self.root, split, self.sequences, frames, cache_dir, progress
            )
        elif depth_estimator is not None:
            self.cache, self.computed_depth_maps = prepare_depth_cache(
                self.root, split, self.sequences, depth_estimator, cache_dir, progress
            )
        if require_depth and (parallax_depth or depth_estimator is None):
            lacking = [s for s in self.sequences if s.depth is None]
            if lacking:
                where = lacking[0].sharp[0].parent
                hint = (
                    "parallax D_b trains against the reference depth there"
                    if parallax_depth
                    else "pass a depth estimator (--depth-model) to compute and cache it"
                )
                raise InputError(f"{where}: no depth/ folder beside the frames; {hint}")

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def frame_name(self, i: int) -> str:
        """'SEQ/stem' of item i's centre frame (for reports and saved outputs)."""
        si, t = self.items[i]
        seq = self.sequences[si]
        return f"{seq.name}/{seq.sharp[t].stem}" if seq.name else seq.sharp[t].stem

    def _read(self, path: Path, depth: bool) -> np.ndarray:
        """One file in its own 8/16-bit dtype, from the frame cache when it is on."""
        key = (path, depth)
        if self._frames is not None and key in self._frames:
            return self._frames[key]
        img = read_depth_raw(path) if depth else read_rgb_raw(path)
        if self._frames is not None:
            self._frames[key] = img
        return img

    def _crop_box(
        self,
        rng: np.random.Generator,
        seq: Sequence,
        t: int,
        h: int,
        w: int,
        extent: np.ndarray | None = None,
    ):
        """Top-left (y, x) of the training crop. Uniform, unless crop_bias > 0 and the frame
        has a blur-extent map (extent/, written by `dgn data synth`; `extent`: the raw map
        when the caller has read it already): then CROP_CANDIDATES uniform boxes are drawn
        and one is picked with probability proportional to (1 + mean blur extent in px) **
        crop_bias, so crops land where the blur is (most pixels of a frame can be nearly
        sharp)."""
        if self.crop_bias <= 0:
            return random_crop_box(rng, h, w, self.crop)
        if extent is None:
            extent_path = _extent_path(seq, t)
            if not extent_path.is_file():
                return random_crop_box(rng, h, w, self.crop)
            extent = self._read(extent_path, True)
        boxes = [random_crop_box(rng, h, w, self.crop) for _ in range(CROP_CANDIDATES)]
        c, s = self.crop, CROP_SCORE_STRIDE
        means = np.array(
            [extent[y : y + c : s, x : x + c : s].mean() / EXTENT_SCALE for y, x in boxes]
        )
        weights = (1.0 + means) ** self.crop_bias
        return boxes[int(rng.choice(len(boxes), p=weights / weights.sum()))]

    def _depth_path(self, seq: Sequence, t: int) -> Path | None:
        if seq.depth is not None:
            return seq.depth[t]
        return self.cache.path(seq, "depth", t) if self.cache is not None else None

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < len(self.items):
            raise IndexError(i)
        si, t = self.items[i]
        seq = self.sequences[si]
        half = centre_index(self.frames)  # frames each side of the centre
        window = [reflect_index(t + o, len(seq)) for o in range(-half, half + 1)]
        # Raw 8/16-bit arrays until after the crop: only the crop is converted to float.
        raw = {f"blur{k}": self._read(seq.blur[j], False) for k, j in enumerate(window)}
        raw["sharp"] = self._read(seq.sharp[t], False)
        dpath = self._depth_path(seq, t)
        if dpath is not None:
            raw["depth"] = self._read(dpath, True)
        if self.cache is not None:
            raw["depth_init"] = self._read(self.cache.path(seq, "depth_init", t), True)
        if self.with_extent:
            raw["extent"] = self._read(_extent_path(seq, t), True)
        h, w = raw["sharp"].shape[:2]
        for key, m in raw.items():
            if m.shape[:2] != (h, w):
                name = "blur" if key.startswith("blur") else key
                raise InputError(
                    f"{seq.sharp[t]}: {name} is {m.shape[1]}x{m.shape[0]} but the sharp frame "
                    f"is {w}x{h}; all frames of a sequence must have the same size"
                )

        rng = _rng(self.seed, i, self.epoch, 0xC0)
        if self.crop is not None:
            if h < self.crop or w < self.crop:
                raise InputError(
                    f"{seq.sharp[t]}: frame is {w}x{h}, smaller than the {self.crop}px crop; "
                    "use a smaller crop"
                )
            y, x = self._crop_box(rng, seq, t, h, w, raw.get("extent"))
            raw = {k: m[y : y + self.crop, x : x + self.crop] for k, m in raw.items()}
        maps = {
            "blur": np.concatenate([to01(raw[f"blur{k}"]) for k in range(len(window))], axis=2),
            "sharp": to01(raw["sharp"]),
        }
        for key in ("depth", "depth_init"):
            if key in raw:
                maps[key] = to01(raw[key])[..., None]
        if "extent" in raw:
            maps["extent"] = extent_from_u16(raw["extent"])[..., None]
        if self.augment:
            hh, ww = maps["sharp"].shape[:2]
            geo = Geometric.draw(rng, square=hh == ww)
            maps = {k: geo(m) for k, m in maps.items()}
            if self.noise_sigma > 0:
                maps["blur"] = add_noise(maps["blur"], rng, self.noise_sigma)
            maps["blur"] = maybe_jpeg(maps["blur"], rng, self.jpeg_prob)  # after noise, as a camera
        out = {"blur": to_tensor_pm1(maps["blur"]), "sharp": to_tensor_pm1(maps["sharp"])}
        for key in ("depth", "depth_init", "extent"):
            if key in maps:
                out[key] = to_tensor_01(maps[key])
        return out


def _extent_path(seq: Sequence, t: int) -> Path:
    """Where `dgn data synth` wrote frame t's blur-extent map: SEQ/extent/, beside SEQ/sharp/."""
    return seq.sharp[t].parent.parent / "extent" / seq.sharp[t].name


def worker_init(_worker_id: int) -> None:
    """Keep each DataLoader worker on one thread (OpenCV and torch would otherwise each start
    a thread per core and fight over the 2 cores the workers already fill)."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


class JoinedDataset(ConcatDataset):
    """Several datasets as one (items of the first, then of the next, ...); `set_epoch` reaches
    each part, so every part still varies its crops per epoch."""

    def set_epoch(self, epoch: int) -> None:
        for part in self.datasets:
            if hasattr(part, "set_epoch"):
                part.set_epoch(epoch)


def make_loader(
    dataset: Dataset,
    batch_size: int = 4,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    num_workers: int = 2,
    drop_last: bool = True,
) -> DataLoader:
    """A DataLoader whose order is a pure function of (seed, epoch): `num_workers` processes
    (2 keeps 2 cores busy) with one thread each, pinned memory when CUDA is present."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=gen,
        num_workers=num_workers,
        worker_init_fn=worker_init if num_workers > 0 else None,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
    )
