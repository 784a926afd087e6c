"""Paired blurred/sharp folders on disk: layout discovery, image reading, the depth cache.

Three layouts are read (S = split, e.g. train or test):

- GOPRO_Large:  ROOT/S/SEQ/{blur,sharp}/*.png   (optional ROOT/S/SEQ/depth/*.png)
- REDS-like:    ROOT/S/{blur,sharp}/SEQ/*.png   (optional ROOT/S/depth/SEQ/*.png)
- flat:         ROOT/{blur,sharp}/*.png or ROOT/S/{blur,sharp}/*.png (one sequence)

Frames are paired by file stem and ordered by name, numbers compared as numbers. depth/ files
are 16-bit PNGs of normalised inverse depth (value / 65535, 1 = nearest), as `dgn data synth`
writes them.

Datasets without depth/ get their depth from an estimator, computed once on full frames and
cached as 16-bit PNGs under CACHE/<estimator key>/<split>/<seq>/{depth,depth_init}/<stem>.png,
where CACHE is ROOT/.dgn-depth-cache or a folder of the caller's choice. The key is a hash of
the estimator's class, name and weights, so another estimator (or other weights) never reads
stale maps: it gets its own folder.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dgn_cli.data.synth import depth_to_u16, write_png
from dgn_cli.errors import InputError, OutputError
from dgn_cli.fsutil import write_text_atomic

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
CACHE_NAME = ".dgn-depth-cache"


@dataclass
class Sequence:
    """One sequence: aligned frame lists (ordered by name). `depth` is None without depth/."""

    name: str
    blur: list[Path]
    sharp: list[Path]
    depth: list[Path] | None = None

    def __len__(self) -> int:
        return len(self.sharp)


def natural_key(name: str) -> list:
    """'frame10' sorts after 'frame9' (numbers compared as numbers)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _images(folder: Path) -> dict[str, Path]:
    return {
        p.stem: p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    }


def _pair(name: str, blur_dir: Path, sharp_dir: Path, depth_dir: Path) -> Sequence:
    blur, sharp = _images(blur_dir), _images(sharp_dir)
    for a, b, da, db in ((blur, sharp, blur_dir, sharp_dir), (sharp, blur, sharp_dir, blur_dir)):
        missing = sorted(set(a) - set(b))
        if missing:
            raise InputError(
                f"{da / a[missing[0]].name}: no matching frame in {db} "
                f"({len(missing)} unpaired); every blurred frame needs a sharp one of the same name"
            )
    stems = sorted(sharp, key=natural_key)
    depth = None
    if depth_dir.is_dir():
        dmap = _images(depth_dir)
        missing = [s for s in stems if s not in dmap]
        if missing:
            raise InputError(
                f"{depth_dir}: no depth map for frame {missing[0]!r} ({len(missing)} missing); "
                "complete depth/ or remove it to use a depth estimator"
            )
        depth = [dmap[s] for s in stems]
    return Sequence(name, [blur[s] for s in stems], [sharp[s] for s in stems], depth)


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir() if p.is_file())


def split_folder(root: Path, split: str) -> Path | None:
    """The folder holding `split`'s sequences: ROOT/SPLIT, else ROOT itself when it holds
    blur/ + sharp/ (one split for all), else None."""
    if (root / split).is_dir():
        return root / split
    if (root / "blur").is_dir() and (root / "sharp").is_dir():
        return root
    return None


def discover(root: str | Path, split: str = "train") -> tuple[str, list[Sequence]]:
    """Find the sequences of `split` under `root`. Returns (layout, sequences) with layout one
    of "gopro", "reds", "flat"."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found")
    base = split_folder(root, split)
    if base is None:
        raise InputError(
            f"{root}: no {split}/ folder and no blur/ + sharp/ folders; expected "
            f"{split}/SEQ/{{blur,sharp}}/*.png (GOPRO), {split}/{{blur,sharp}}/SEQ/*.png (REDS) "
            "or {blur,sharp}/*.png"
        )
    seqs: list[Sequence] = []
    if (base / "blur").is_dir() and (base / "sharp").is_dir():
        if _has_images(base / "blur"):
            layout = "flat"
            seqs.append(_pair("", base / "blur", base / "sharp", base / "depth"))
        else:
            layout = "reds"
            for sub in sorted(p for p in (base / "blur").iterdir() if p.is_dir()):
                sharp_dir = base / "sharp" / sub.name
                if not sharp_dir.is_dir():
                    raise InputError(f"{sub}: no matching folder {sharp_dir}")
                seqs.append(_pair(sub.name, sub, sharp_dir, base / "depth" / sub.name))
    else:
        layout = "gopro"
        for sub in sorted(p for p in base.iterdir() if p.is_dir()):
            if (sub / "blur").is_dir() and (sub / "sharp").is_dir():
                seqs.append(_pair(sub.name, sub / "blur", sub / "sharp", sub / "depth"))
    seqs = [s for s in seqs if len(s)]
    if not seqs:
        raise InputError(
            f"{base}: no blurred/sharp image pairs found (expected SEQ/{{blur,sharp}}/*.png, "
            "{blur,sharp}/SEQ/*.png or {blur,sharp}/*.png)"
        )
    return layout, seqs


# --------------------------------------------------------------------------------------------
# reading


def read_rgb_raw(path: Path) -> np.ndarray:
    """Any 8/16-bit, grey/RGB/RGBA image -> (H, W, 3) RGB in its own dtype (uint8 or uint16)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{path}: cannot read this image (missing or corrupt)")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_depth_raw(path: Path) -> np.ndarray:
    """A 16-bit or 8-bit depth PNG -> (H, W) in its own dtype."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{path}: cannot read this depth map (missing or corrupt)")
    return img[..., 0] if img.ndim == 3 else img


def to01(img: np.ndarray) -> np.ndarray:
    """uint16 (/ 65535) or uint8 (/ 255) -> float32 in [0, 1]."""
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    return img.astype(np.float32) / np.float32(scale)


def read_rgb01(path: Path) -> np.ndarray:
    """Any 8/16-bit, grey/RGB/RGBA image -> (H, W, 3) float32 RGB in [0, 1]."""
    return to01(read_rgb_raw(path))


def read_depth01(path: Path) -> np.ndarray:
    """A 16-bit (value / 65535) or 8-bit (value / 255) depth PNG -> (H, W) float32 in [0, 1]."""
    return to01(read_depth_raw(path))


# --------------------------------------------------------------------------------------------
# depth cache


def estimator_key(estimator: nn.Module) -> str:
    """A short hash of the estimator's class, name, kind and weights."""
    h = hashlib.sha256()
    ident = [type(estimator).__qualname__, str(getattr(estimator, "kind", "")),
             str(getattr(estimator, "name", ""))]  # fmt: skip
    h.update("|".join(ident).encode())
    for k, v in sorted(estimator.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


@torch.no_grad()
def estimate_depth(estimator: nn.Module, rgb01: np.ndarray) -> np.ndarray:
    """(H, W, 3) [0, 1] -> (H, W) [0, 1] with the estimator on its own device."""
    p = next(iter(estimator.parameters()), None)
    device = p.device if p is not None else torch.device("cpu")
    x = torch.from_numpy(np.ascontiguousarray(rgb01.transpose(2, 0, 1)))[None].to(device)
    d = estimator(x.float())
    if d.shape[-2:] != x.shape[-2:]:
        d = F.interpolate(d, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return d[0, 0].clamp(0, 1).float().cpu().numpy()


@dataclass
class DepthCache:
    """Where one estimator's depth maps of one dataset split live."""

    folder: Path

    def path(self, seq: Sequence, kind: str, frame: int) -> Path:
        return self.folder / (seq.name or "_") / kind / f"{seq.sharp[frame].stem}.png"


# Written into every cache folder: the split folder whose maps it holds.
CACHE_SOURCE_FILE = "source.json"


def open_depth_cache(
    root: str | Path, split: str, key: str, cache_dir: str | Path | None = None
) -> DepthCache:
    """The cache folder of one kind of map (`key`) of ROOT's `split`: under `cache_dir`, or
    ROOT/.dgn-depth-cache. The folder is tied to the split it caches: synthetic splits all name
    their sequences 000000, 000001, ..., so without this two datasets sharing one --depth-cache
    would silently be served each other's maps. Raises OutputError when the folder holds another
    split's maps; a folder filled before this check existed is adopted by its first user."""
    root = Path(root)
    base = Path(cache_dir) if cache_dir is not None else root / CACHE_NAME
    cache = DepthCache(base / key / split)
    source = str((split_folder(root, split) or root).resolve())
    marker = cache.folder / CACHE_SOURCE_FILE
    try:
        claimed = json.loads(marker.read_text()).get("data")
    except (OSError, ValueError, AttributeError):
        claimed = None
    if claimed is None:
        try:
            cache.folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(marker, json.dumps({"data": source}) + "\n")
        except OSError:
            pass  # a read-only cache cannot be claimed; writing a map would fail with its reason
    elif claimed != source:
        raise OutputError(
            f"{cache.folder}: this depth cache holds the maps of {claimed}, not of {source}; "
            "pass another --depth-cache (or delete that folder)"
        )
    return cache


def prepare_depth_cache(
    root: Path,
    split: str,
    seqs: list[Sequence],
    estimator: nn.Module,
    cache_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[DepthCache, int]:
    """Compute (once) the missing cached maps: "depth_init" from every blurred frame, and
    "depth" from every sharp frame of sequences without depth/. Returns (cache, computed)."""
    key = estimator_key(estimator)
    cache = open_depth_cache(root, split, key, cache_dir)
    jobs = []
    for seq in seqs:
        for i in range(len(seq)):
            jobs.append((cache.path(seq, "depth_init", i), seq.blur[i]))
            if seq.depth is None:
                jobs.append((cache.path(seq, "depth", i), seq.sharp[i]))
    todo = [(t, src) for t, src in jobs if not t.exists()]
    if todo:
        try:
            cache.folder.mkdir(parents=True, exist_ok=True)
            meta = {"estimator": type(estimator).__qualname__,
                    "name": str(getattr(estimator, "name", "")), "key": key}  # fmt: skip
            write_text_atomic(cache.folder.parent / "estimator.json", json.dumps(meta) + "\n")
        except OSError as e:
            raise OutputError(
                f"{cache.folder.parent.parent}: cannot write the depth cache ({e.strerror}); "
                "pass a writable cache_dir"
            ) from None
    was_training = estimator.training
    estimator.eval()
    try:
        for n, (target, src) in enumerate(todo):
            write_png(target, depth_to_u16(estimate_depth(estimator, read_rgb01(src))))
            if progress is not None:
                progress(n + 1, len(todo))
    finally:
        estimator.train(was_training)
    return cache, len(todo)


def header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file's header (Pillow opens lazily: no pixels decoded), or None
    when Pillow cannot read the header (the decoder reports that file later)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except Exception:  # unreadable header: reading the frame names the file
        return None


def check_frame_sizes(sequences: list[Sequence]) -> None:
    """Every blur / sharp / depth file of a sequence has the size of its first sharp frame;
    InputError naming the first file that differs. Reads headers only, so a whole split is
    checked up front in seconds, before any depth map is computed or a step is trained."""
    for seq in sequences:
        if not len(seq):
            continue
        expected = header_size(seq.sharp[0])
        if expected is None:
            continue
        files = [*seq.blur, *seq.sharp, *(seq.depth or [])]
        for path in files:
            size = header_size(path)
            if size is not None and size != expected:
                raise InputError(
                    f"{path}: {size[0]}x{size[1]}, but {seq.sharp[0].name} of the same sequence "
                    f"is {expected[0]}x{expected[1]}; all frames of a sequence must have one size"
                )
