"""Training crops from whole rendered 1280x720 frames, rendered by a pool of worker processes.

    pool = FramePool(photos, frames=1, crop=256, workers=14, crops_per_frame=16)
    batch = pool.next_batch(16)          # uint8 blur/sharp, float32 depth, on the CPU
    batch = batch_to_device(batch, device, channels_last=True)   # float [-1, 1] there
    pool.close()

Why: the first weights learned from crop-sized scenes (128-256 px), whose statistics are not
those of a 1280x720 frame (object sizes, blur extents, how much of the frame is sharp). Here
every training crop is cut from a full frame rendered at the test split's size with the
handheld camera. Rendering a frame costs about a second of one core, far more than a GPU step,
so:

- `workers` processes render frames ahead (a bounded number in flight, `2 x workers`), and
  the main process keeps the newest `pool_frames` of them;
- each step's crops come from random frames of the pool, at positions weighted towards blur
  (the renderer's per-pixel extent map: CROP_CANDIDATES boxes, one kept with probability
  proportional to (1 + mean extent px) ** crop_bias), with the paper's flips and rotations;
- a rendered frame gives `crops_per_frame` crops on average: a step waits for new frames only
  when the crops drawn would exceed crops_per_frame x frames rendered. The time spent waiting
  is `wait_s`; the trainer logs it as `data_wait_fraction` of the step time.

With workers=0 frames are rendered in the calling process when needed (tests, tiny runs).
Frames arrive in whatever order the workers finish, so this stream is NOT a pure function of
(seed, step) like `step_batches`: a resumed budgeted run continues with fresh frames (scene
indices start after the ones already used) rather than replaying the same crops.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import multiprocessing
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch

from dgn_cli.data.augment import Geometric, maybe_jpeg, random_crop_box
from dgn_cli.data.synth import PhotoBank, SynthConfig, camera_config, render_sequence, sample_seed
from dgn_cli.errors import InputError
from dgn_cli.tensors import centre_index

FRAME_SIZE = (1280, 720)  # the synthetic test split's frames
CROP_CANDIDATES = 8
SCORE_STRIDE = 8

_BANKS: dict[str, PhotoBank] = {}  # one per worker process


def render_frame(
    photos: str, seed: int, index: int, size: tuple[int, int], frames: int, cfg: dict
) -> dict[str, np.ndarray]:
    """Render scene `index` of the stream `seed` as a training frame: "blur" uint8 (H, W, 3K)
    (frames in time order), "sharp" uint8 (H, W, 3), "depth" float32 (H, W) and "extent"
    float16 (H, W), all of the centre frame. Runs in a worker process."""
    cv2.setNumThreads(1)
    bank = _BANKS.get(photos)
    if bank is None:
        bank = _BANKS[photos] = PhotoBank(photos)
    w, h = size
    out = render_sequence(bank, sample_seed(seed, index), w, h, frames, SynthConfig(**cfg))
    c = centre_index(frames)
    return {
        "blur": out["blur"].transpose(1, 2, 0, 3).reshape(h, w, 3 * frames),
        "sharp": out["sharp"][c],
        "depth": out["depth"][c],
        "extent": out["extent"][c].astype(np.float16),
    }


class FramePool:
    """Crops of whole rendered frames for training (see the module docstring)."""

    def __init__(
        self,
        photos: str | Path,
        frames: int = 1,
        crop: int = 256,
        seed: int = 0,
        camera: str = "handheld",
        size: tuple[int, int] = FRAME_SIZE,
        workers: int = 0,
        pool_frames: int = 32,
        crops_per_frame: int = 8,
        crop_bias: float = 1.0,
        augment: bool = True,
        start_index: int = 0,
        jpeg_prob: float = 0.0,
        with_extent: bool = False,
    ):
        if crop > min(size):
            raise InputError(f"--crop {crop} is larger than the {size[0]}x{size[1]} frames")
        PhotoBank(photos)  # fail here, with the photo folder's message, not in a worker
        self.photos, self.frames, self.crop, self.seed = str(photos), frames, crop, int(seed)
        self.size, self.workers = (int(size[0]), int(size[1])), int(workers)
        self.cfg = asdict(camera_config(camera))
        self.crops_per_frame, self.crop_bias, self.augment = crops_per_frame, crop_bias, augment
        self.jpeg_prob = float(jpeg_prob)  # share of blurred crops JPEG-compressed (maybe_jpeg)
        self.with_extent = bool(with_extent)  # batches carry "extent" (--depth-target extent)
        self.pool: collections.deque = collections.deque(maxlen=max(1, pool_frames))
        self.next_index = int(start_index)  # the next scene index to render
        self.frames_received = 0
        self.crops_drawn = 0
        self.wait_s = 0.0
        self._draws = 0
        self._futures: set[cf.Future] = set()
        self._executor: cf.ProcessPoolExecutor | None = None
        if self.workers > 0:
            self._executor = cf.ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("fork")
            )
            self._submit()

    # --- frames ---------------------------------------------------------------------------

    def _job(self) -> tuple:
        index = self.next_index
        self.next_index += 1
        return (self.photos, self.seed, index, self.size, self.frames, self.cfg)

    def _submit(self) -> None:
        assert self._executor is not None
        while len(self._futures) < 2 * self.workers:
            self._futures.add(self._executor.submit(render_frame, *self._job()))

    def _add(self, frame: dict[str, np.ndarray]) -> None:
        self.pool.append(frame)
        self.frames_received += 1

    def _harvest(self, block: bool) -> None:
        """Move finished renders into the pool; with block=True wait for at least one."""
        if self._executor is None:
            if block:
                self._add(render_frame(*self._job()))
            return
        done, _ = cf.wait(
            self._futures, timeout=None if block else 0, return_when=cf.FIRST_COMPLETED
        )
        for future in done:
            self._futures.discard(future)
            self._add(future.result())
        self._submit()

    def _credit(self) -> int:
        return self.crops_per_frame * self.frames_received - self.crops_drawn

    # --- crops ----------------------------------------------------------------------------

    def _box(self, rng: np.random.Generator, extent: np.ndarray) -> tuple[int, int]:
        w, h = self.size
        c, s = self.crop, SCORE_STRIDE
        if self.crop_bias <= 0:
            return random_crop_box(rng, h, w, c)
        boxes = [random_crop_box(rng, h, w, c) for _ in range(CROP_CANDIDATES)]
        means = np.array(
            [float(extent[y : y + c : s, x : x + c : s].mean(dtype=np.float32)) for y, x in boxes]
        )
        weights = (1.0 + means) ** self.crop_bias
        return boxes[int(rng.choice(len(boxes), p=weights / weights.sum()))]

    def next_batch(self, batch_size: int) -> dict[str, torch.Tensor]:
        """`batch_size` crops: "blur" uint8 (B, 3K, c, c), "sharp" uint8 (B, 3, c, c), "depth"
        float32 (B, 1, c, c) and, with_extent, "extent" float32 (B, 1, c, c) in px. Waits
        (counted in wait_s) only when the frames rendered so far cannot give that many more
        crops."""
        self._harvest(block=False)
        t0 = time.perf_counter()
        while not self.pool or self._credit() < batch_size:
            self._harvest(block=True)
        self.wait_s += time.perf_counter() - t0

        c, k3 = self.crop, 3 * self.frames
        blur = np.empty((batch_size, c, c, k3), np.uint8)
        sharp = np.empty((batch_size, c, c, 3), np.uint8)
        maps = {key: np.empty((batch_size, c, c, 1), np.float32) for key in self._map_keys}
        frames = list(self.pool)
        for b in range(batch_size):
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, self._draws, 0xC0]))
            self._draws += 1
            frame = frames[int(rng.integers(len(frames)))]
            y, x = self._box(rng, frame["extent"])
            keys = ("blur", "sharp", *self._map_keys)
            crops = [frame[key][y : y + c, x : x + c] for key in keys]
            if self.augment:
                geo = Geometric.draw(rng, square=True)
                crops = [geo(m) for m in crops]
                crops[0] = maybe_jpeg(crops[0], rng, self.jpeg_prob)
            blur[b], sharp[b] = crops[:2]
            for key, crop in zip(self._map_keys, crops[2:], strict=True):
                maps[key][b, ..., 0] = crop
        self.crops_drawn += batch_size
        arrays = {"blur": blur, "sharp": sharp, **maps}
        return {key: torch.from_numpy(a).permute(0, 3, 1, 2) for key, a in arrays.items()}

    @property
    def _map_keys(self) -> tuple[str, ...]:
        return ("depth", "extent") if self.with_extent else ("depth",)

    def stats(self) -> dict[str, float]:
        return {
            "frames_rendered": self.frames_received,
            "crops_per_rendered_frame": self.crops_drawn / max(1, self.frames_received),
            "data_wait_s": self.wait_s,
        }

    def close(self) -> None:
        if self._executor is not None:
            for future in self._futures:
                future.cancel()
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
            self._futures.clear()

    def __enter__(self) -> FramePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def batch_to_device(
    batch: dict[str, torch.Tensor], device: torch.device, channels_last: bool
) -> dict[str, torch.Tensor]:
    """Move a FramePool batch to `device` and convert there: uint8 images to float32 in
    [-1, 1] (a quarter of the bytes cross to the GPU), depth as it is."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    pin = device.type == "cuda"
    out = {}
    for key, value in batch.items():
        if pin:
            value = value.pin_memory()
        value = value.to(device, non_blocking=True)
        if value.dtype == torch.uint8:
            value = value.float().mul_(2.0 / 255.0).sub_(1.0)
        out[key] = value.contiguous(memory_format=fmt)
    return out
