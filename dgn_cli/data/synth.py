"""Depth-aware synthetic motion blur rendered from real photographs, with exact depth.

A scene is a stack of flat layers cut from real photos, drawn far to near (painter's order):

- a far backdrop filling the frame (inverse depth nearly constant, slightly tilted);
- optionally a slanted ground plane below a horizon, whose inverse depth grows linearly
  towards the bottom of the frame (for a plane, inverse depth is affine in image coordinates);
- several nearer objects with random hard-edged shapes (polygons, ellipses, bars), each
  textured by a photo crop, each a small slanted plane at its own depth.

During the exposure the camera translates sideways: a point at inverse depth d moves by
d * t(tau) pixels, so near things blur more. A small camera rotation about the image centre
adds depth-independent blur, and some objects move on their own. Because every layer is planar
and the translation is lateral, each layer's motion is an exact affine map, so every sub-frame
is rendered with one `cv2.warpAffine` per layer (RGB, alpha and depth premultiplied together).

N sub-frames (N odd, 7..13, like the 240 fps GOPRO frames) are averaged in LINEAR light
(undo sRGB, average, redo sRGB); the sharp frame is the centre sub-frame; Gaussian noise
(sigma 0.01 in [0, 1] sRGB units, as the paper) is added to the blurred frame only.
Consecutive frames of a sequence use consecutive, non-overlapping groups of sub-frames along one
continuous trajectory (duty cycle 1, like GOPRO).

Depth is the normalised inverse depth of each sharp frame, 1 = nearest, min-max normalised over
the whole sequence (so consecutive frames agree; with one frame this is the per-image min-max an
estimator's output gets at inference).

Everything random comes from one `numpy.random.Generator` seeded by `seed`, and the photos are
read in sorted order, so a seed and a photo folder give the same bytes every time.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np

from dgn_cli.errors import InputError, OutputError
from dgn_cli.fsutil import atomic_path, write_text_atomic
from dgn_cli.visualize import colorize

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
REFERENCE_SIZE = (1280, 720)  # blur extents in SynthConfig are in pixels at this size

# Default seeds of the two splits: `dgn data synth OUT --photos DIR --split test` with these
# defaults regenerates exactly the benchmark's test split.
TRAIN_SEED = 0
TEST_SEED = 20200720
SPLIT_DEFAULTS = {
    "train": {"count": 1000, "width": 256, "height": 256, "seed": TRAIN_SEED},
    "test": {"count": 100, "width": 1280, "height": 720, "seed": TEST_SEED},
}


@dataclass
class SynthConfig:
    """Scene and camera statistics. Pixel quantities are at 1280x720 and scale with
    min(width, height) / 720 (see `scale_with_size`)."""

    extent_px: tuple[float, float] = (2.0, 40.0)  # blur path of the nearest object per exposure
    subframes: tuple[int, ...] = (7, 9, 11, 13)  # odd, so the centre sub-frame exists
    objects: tuple[int, int] = (4, 10)  # number of near objects (inclusive)
    object_size: tuple[float, float] = (0.2, 0.75)  # longest side, fraction of min(H, W)
    object_depth: tuple[float, float] = (0.25, 1.0)  # raw inverse depth; nearest is set to 1
    backdrop_depth: tuple[float, float] = (0.0, 0.12)  # raw inverse depth of the far backdrop
    ground_prob: float = 0.6  # chance of a slanted ground plane below a horizon
    rotation_px: tuple[float, float] = (0.0, 6.0)  # corner displacement by rotation, per exposure
    shake: float = 0.25  # amplitude of the wobble on the camera path, relative to its length
    moving_prob: float = 0.35  # chance that an object moves on its own
    object_motion_px: tuple[float, float] = (2.0, 30.0)  # own motion per exposure
    noise_sigma: float = 0.01  # Gaussian noise on the blurred frame, [0, 1] sRGB units
    gain: tuple[float, float] = (0.75, 1.25)  # exposure jitter of each texture (linear light)
    # None: the N sub-frames only, like GOPRO's 240 fps frames, so a long path shows N ghost
    # copies (42 px over 7 sub-frames: 7 px apart). A number: each sub-frame interval is split
    # so that no point moves more than this many pixels between samples (continuous blur, as a
    # real exposure); the scene and trajectory are the same as without it.
    subframe_step_px: float | None = None
    scale_with_size: bool = True
    reference_size: tuple[int, int] = field(default=REFERENCE_SIZE)

    def scale(self, width: int, height: int) -> float:
        if not self.scale_with_size:
            return 1.0
        return min(width, height) / min(self.reference_size)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Named camera statistics. "lateral" is the first renderer's (the original benchmark split): a
# sideways translation that blurs the nearest object 2-40 px while the far backdrop (inverse
# depth <= 0.12) stays nearly sharp, so ~70 % of pixels had under 2 px of blur. "handheld" is
# GOPRO-like: the far field sits at 15-45 % of the nearest object's inverse depth and the
# camera rotates by up to 16 px at the corners, so blur covers the whole frame (median a few
# pixels at 1280x720, tail to ~40 px) while far layers still blur less than near ones.
CAMERAS = {
    "lateral": SynthConfig(),
    "handheld": SynthConfig(
        extent_px=(6.0, 42.0),
        backdrop_depth=(0.15, 0.45),
        object_depth=(0.35, 1.0),
        rotation_px=(2.0, 16.0),
    ),
}
DEFAULT_CAMERA = "handheld"


def camera_config(name: str, **overrides) -> SynthConfig:
    """A copy of the named camera's SynthConfig with `overrides` applied."""
    if name not in CAMERAS:
        raise InputError(f"unknown camera {name!r}; choose one of {', '.join(CAMERAS)}")
    return dataclasses.replace(CAMERAS[name], **overrides)


# --------------------------------------------------------------------------------------------
# colour


_SRGB_TO_LINEAR_LUT = np.array(
    [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in np.arange(256) / 255.0],
    dtype=np.float32,
)


def srgb_to_linear_u8(img: np.ndarray) -> np.ndarray:
    """uint8 sRGB -> float32 linear in [0, 1] (exact, by table)."""
    return _SRGB_TO_LINEAR_LUT[img]


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """float linear in [0, 1] -> float32 sRGB in [0, 1]."""
    x = np.clip(x, 0.0, 1.0).astype(np.float32)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055).astype(
        np.float32
    )


def to_u8(x01: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x01 * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# photos


class PhotoBank:
    """The photos of a folder (recursively, sorted by relative path), read lazily and cached
    as uint8 RGB, downscaled so the longest side is at most `max_side`."""

    def __init__(self, photos_dir: str | Path, max_side: int = 1600, cache_size: int = 64):
        self.root = Path(photos_dir)
        if not self.root.is_dir():
            raise InputError(
                f"{self.root}: photo folder not found; run `dgn data photos {self.root}` first"
            )
        self.paths = sorted(
            (p for p in self.root.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES),
            key=lambda p: p.relative_to(self.root).as_posix(),
        )
        if not self.paths:
            raise InputError(
                f"{self.root}: no photos (.jpg/.png) found; run `dgn data photos {self.root}`"
            )
        self.max_side = max_side
        self._load = functools.lru_cache(maxsize=cache_size)(self._read)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB."""
        return self._load(i)

    def names(self) -> list[str]:
        return [p.relative_to(self.root).as_posix() for p in self.paths]

    def _read(self, i: int) -> np.ndarray:
        path = self.paths[i]
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(f"{path}: cannot read this photo; remove it or replace it")
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        h, w = img.shape[:2]
        if max(h, w) > self.max_side:
            f = self.max_side / max(h, w)
            img = cv2.resize(
                img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA
            )
        return img

    # Pickle without the cache (DataLoader workers build their own).
    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_load"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._load = functools.lru_cache(maxsize=64)(self._read)


def _texture(bank: PhotoBank, rng: np.random.Generator, w: int, h: int, gain) -> np.ndarray:
    """A (h, w, 3) float32 linear-light crop of a random photo, downscaled (never upscaled when
    a big enough photo exists), randomly flipped, with a random exposure gain."""
    idx = int(rng.integers(len(bank)))
    photo = bank[idx]
    ph, pw = photo.shape[:2]
    # largest crop with the target aspect that fits; pick a scale between 1:1 and that
    fit = min(pw / w, ph / h)
    lo = min(1.0, fit)
    s = float(np.exp(rng.uniform(np.log(lo), np.log(max(fit, lo) + 1e-6))))
    cw, ch = max(1, min(pw, round(w * s))), max(1, min(ph, round(h * s)))
    x0 = int(rng.integers(0, pw - cw + 1))
    y0 = int(rng.integers(0, ph - ch + 1))
    crop = photo[y0 : y0 + ch, x0 : x0 + cw]
    interp = cv2.INTER_AREA if cw >= w else cv2.INTER_CUBIC
    crop = cv2.resize(crop, (w, h), interpolation=interp)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    lin = srgb_to_linear_u8(np.ascontiguousarray(crop))
    return np.clip(lin * np.float32(rng.uniform(*gain)), 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# scene


@dataclass
class Layer:
    """A planar layer: premultiplied (rgb*a, a, d*a) patch (h, w, 5) placed at `origin` (x, y)
    in frame coordinates at tau = 0, with inverse depth d(p) = d0 + g . (p - p0) (frame coords),
    and its own velocity `motion` (pixels per exposure)."""

    patch: np.ndarray
    origin: tuple[float, float]
    d0: float
    grad: tuple[float, float]
    p0: tuple[float, float]
    motion: tuple[float, float] = (0.0, 0.0)
    backdrop: bool = False


def _plane_patch(rgb, alpha, origin, d0, grad, p0) -> np.ndarray:
    h, w = alpha.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    depth = d0 + grad[0] * (xs + origin[0] - p0[0]) + grad[1] * (ys + origin[1] - p0[1])
    a = alpha[..., None]
    return np.concatenate([rgb * a, a, depth[..., None] * a], axis=2).astype(np.float32)


def _shape_mask(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A random hard-edged shape filling most of a (h, w) box, anti-aliased, float32 [0, 1]."""
    mask = np.zeros((h, w), np.uint8)
    kind = rng.choice(["polygon", "ellipse", "bar", "polygon"])
    cx, cy = (w - 1) / 2, (h - 1) / 2
    shift = 4  # sub-pixel vertex precision for fillPoly
    if kind == "ellipse":
        axes = (int(w / 2 * rng.uniform(0.8, 0.98) * 16), int(h / 2 * rng.uniform(0.8, 0.98) * 16))
        cv2.ellipse(mask, (int(cx * 16), int(cy * 16)), axes, 0, 0, 360, 255, -1, cv2.LINE_AA, 4)
    elif kind == "bar":
        mx, my = w * rng.uniform(0.0, 0.1), h * rng.uniform(0.0, 0.1)
        pts = np.array([[mx, my], [w - 1 - mx, my], [w - 1 - mx, h - 1 - my], [mx, h - 1 - my]])
        cv2.fillPoly(mask, [np.rint(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, shift)
    else:
        n = int(rng.integers(5, 14))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = rng.uniform(0.45, 1.0, n)
        pts = np.stack([cx + np.cos(ang) * rad * cx, cy + np.sin(ang) * rad * cy], axis=1)
        cv2.fillPoly(mask, [np.rint(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, shift)
    return mask.astype(np.float32) / 255.0


@dataclass
class Trajectory:
    """Camera translation t(tau) (pixels per unit inverse depth) and rotation theta(tau)
    (radians); tau is in exposures, 0 = centre of the middle frame."""

    vel: np.ndarray
    acc: np.ndarray
    shake_amp: np.ndarray
    shake_freq: float
    shake_phase: np.ndarray
    omega: float
    alpha: float

    def translation(self, tau: float) -> np.ndarray:
        wob = self.shake_amp * (
            np.sin(2 * np.pi * self.shake_freq * tau + self.shake_phase) - np.sin(self.shake_phase)
        )
        return self.vel * tau + 0.5 * self.acc * tau * tau + wob

    def rotation(self, tau: float) -> float:
        return self.omega * tau + 0.5 * self.alpha * tau * tau


def _subframe_times(n_sub: int, frames: int) -> np.ndarray:
    """(frames, n_sub) times: consecutive non-overlapping groups, centre sub-frame at integer
    tau, the middle frame at tau = 0."""
    centre = (frames - 1) / 2
    k = np.arange(frames)[:, None] - centre
    j = (np.arange(n_sub)[None, :] - (n_sub - 1) / 2) / n_sub
    return (k + j).astype(np.float64)


def supersampling(traj: Trajectory, layers, cfg: SynthConfig, n_sub: int, width, height) -> int:
    """Odd factor k >= 1 so that N*k samples per exposure move no point by more than
    `cfg.subframe_step_px` between samples (1 when it is None). Bounds the step by the nearest
    object's translation (inverse depth 1) + the corners' rotation + the fastest own motion."""
    if cfg.subframe_step_px is None:
        return 1
    times = _subframe_times(n_sub, 1)[0]
    moves = [np.linalg.norm(traj.translation(b) - traj.translation(a)) for a, b in pairwise(times)]
    turns = [abs(traj.rotation(b) - traj.rotation(a)) for a, b in pairwise(times)]
    shift, turn = float(max(moves, default=0.0)), float(max(turns, default=0.0))
    own = max(math.hypot(*layer.motion) for layer in layers) / n_sub
    step = shift + turn * 0.5 * math.hypot(width, height) + own
    k = max(1, math.ceil(step / cfg.subframe_step_px))
    return k if k % 2 else k + 1  # odd, so the centre sample (the sharp frame) exists


def _make_trajectory(rng, cfg: SynthConfig, scale: float, n_sub: int, width, height):
    ang = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(ang), np.sin(ang)])
    perp = np.array([-direction[1], direction[0]])
    traj = Trajectory(
        vel=direction,
        acc=perp * rng.uniform(-1.0, 1.0) + direction * rng.uniform(-0.5, 0.5),
        shake_amp=rng.uniform(-1, 1, 2) * cfg.shake / (2 * np.pi),
        shake_freq=float(rng.uniform(0.5, 2.0)),
        shake_phase=rng.uniform(0, 2 * np.pi, 2),
        omega=1.0,
        alpha=float(rng.uniform(-0.5, 0.5)),
    )
    # Rescale so the nearest object (inverse depth 1) sweeps `extent` pixels along the
    # sub-frames of the middle exposure, and the frame corners sweep `rot` pixels by rotation.
    times = _subframe_times(n_sub, 1)[0]
    pts = np.array([traj.translation(t) for t in times])
    length = float(np.sum(np.linalg.norm(np.diff(pts, axis=0), axis=1)))
    extent = float(rng.uniform(*cfg.extent_px)) * scale
    f = extent / max(length, 1e-9)
    traj.vel, traj.acc, traj.shake_amp = traj.vel * f, traj.acc * f, traj.shake_amp * f
    half_diag = 0.5 * math.hypot(width, height)
    rot_px = float(rng.uniform(*cfg.rotation_px)) * scale
    span = abs(traj.rotation(times[-1]) - traj.rotation(times[0]))
    g = (rot_px / half_diag) / max(span, 1e-9) * (1 if rng.random() < 0.5 else -1)
    traj.omega, traj.alpha = traj.omega * g, traj.alpha * g
    return traj, extent


def _layer_affine(layer: Layer, traj: Trajectory, tau: float, centre) -> np.ndarray:
    """2x3 map from patch coordinates to frame coordinates at time tau."""
    t = traj.translation(tau)
    th = traj.rotation(tau)
    c, s = math.cos(th), math.sin(th)
    rot = np.array([[c, -s], [s, c]])
    g = np.asarray(layer.grad)
    p0 = np.asarray(layer.p0)
    # p' = R (p + d(p) t + m tau - o) + o,   d(p) = d0 + g.(p - p0)
    a = rot @ (np.eye(2) + np.outer(t, g))
    m = np.asarray(layer.motion) * tau
    b = rot @ (t * (layer.d0 - g @ p0) + m - centre) + centre
    origin = np.asarray(layer.origin)
    return np.concatenate([a, (a @ origin + b)[:, None]], axis=1)


def _composite(frame: np.ndarray, layer: Layer, m: np.ndarray) -> None:
    """Warp `layer` by the 2x3 map `m` and draw it over `frame` (H, W, 5) in place.
    (All 5 channels every time: a 4-channel warp is no faster and takes another SIMD path in
    OpenCV, which would change the bytes of the published test split.)"""
    fh, fw = frame.shape[:2]
    ph, pw = layer.patch.shape[:2]
    src = layer.patch
    if layer.backdrop:
        warped = cv2.warpAffine(
            src, m, (fw, fh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
        frame[...] = warped
        return
    corners = np.array([[0, 0, 1], [pw, 0, 1], [0, ph, 1], [pw, ph, 1]], np.float64) @ m.T
    x0 = max(0, int(np.floor(corners[:, 0].min())) - 1)
    y0 = max(0, int(np.floor(corners[:, 1].min())) - 1)
    x1 = min(fw, int(np.ceil(corners[:, 0].max())) + 2)
    y1 = min(fh, int(np.ceil(corners[:, 1].max())) + 2)
    if x1 <= x0 or y1 <= y0:
        return
    mm = m.copy()
    mm[:, 2] -= (x0, y0)
    warped = cv2.warpAffine(
        src, mm, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )  # fmt: skip
    region = frame[y0:y1, x0:x1]
    region *= 1.0 - warped[..., 3:4]
    region += warped


def _build_scene(bank, rng, cfg: SynthConfig, width, height, traj, taus, scale) -> list[Layer]:
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    # how far anything at inverse depth d travels over the whole sequence (for margins)
    pts = np.array([traj.translation(t) for t in taus.ravel()])
    reach = float(np.abs(pts).max()) if len(pts) else 0.0
    rot_reach = max(abs(traj.rotation(t)) for t in taus.ravel()) * 0.5 * math.hypot(width, height)

    layers: list[Layer] = []
    # Far backdrop: fills the frame plus a margin, so it never runs out while it moves.
    d_far = float(rng.uniform(*cfg.backdrop_depth))
    tilt = rng.uniform(-0.02, 0.02, 2) / max(width, height)
    margin = int(math.ceil((d_far + 0.05) * reach + rot_reach)) + 4
    bw, bh = width + 2 * margin, height + 2 * margin
    origin = (-margin, -margin)
    tex = _texture(bank, rng, bw, bh, cfg.gain)
    layers.append(
        Layer(
            _plane_patch(tex, np.ones((bh, bw), np.float32), origin, d_far, tilt, centre),
            origin,
            d_far,
            tuple(tilt),
            tuple(centre),
            backdrop=True,
        )  # fmt: skip
    )

    n_obj = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    depths = np.sort(rng.uniform(*cfg.object_depth, n_obj))
    depths[-1] = 1.0  # the nearest object defines the blur extent
    if rng.random() < cfg.ground_prob:
        # Ground plane from the horizon (depth d_far) down to the bottom edge, no nearer than
        # the farthest object so painter's order stays correct.
        horizon = float(rng.uniform(0.3, 0.7)) * height
        d_bottom = float(rng.uniform(d_far + 0.05, max(d_far + 0.06, depths[0])))
        gy = (d_bottom - d_far) / max(height - horizon, 1.0)
        gmargin = int(math.ceil(max(d_bottom + 0.2, 1.0) * reach + rot_reach)) + 4
        gx0, gy0 = -gmargin, int(math.floor(horizon))
        gw, gh = width + 2 * gmargin, height - gy0 + gmargin
        alpha = np.ones((gh, gw), np.float32)
        alpha[0] = 1.0 - (horizon - gy0)  # sub-pixel horizon
        tex = _texture(bank, rng, gw, gh, cfg.gain)
        p0 = (centre[0], horizon)
        layers.append(
            Layer(_plane_patch(tex, alpha, (gx0, gy0), d_far, (0.0, gy), p0),
                  (gx0, gy0), d_far, (0.0, gy), p0)
        )  # fmt: skip

    short = min(width, height)
    for d0 in depths:
        side = float(rng.uniform(*cfg.object_size)) * short
        aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        w = max(4, int(round(side * min(1.0, aspect))))
        h = max(4, int(round(side * min(1.0, 1.0 / aspect))))
        cx, cy = rng.uniform(0.05, 0.95) * width, rng.uniform(0.05, 0.95) * height
        origin = (float(cx - w / 2), float(cy - h / 2))
        # a slightly slanted plane: inverse depth varies by up to +-10% across the object
        grad = rng.uniform(-0.1, 0.1, 2) * d0 / max(w, h)
        p0 = (float(cx), float(cy))
        motion = (0.0, 0.0)
        if rng.random() < cfg.moving_prob:
            a = rng.uniform(0, 2 * np.pi)
            r = float(rng.uniform(*cfg.object_motion_px)) * scale
            motion = (r * math.cos(a), r * math.sin(a))
        tex = _texture(bank, rng, w, h, cfg.gain)
        mask = _shape_mask(rng, w, h)
        patch = _plane_patch(tex, mask, origin, float(d0), grad, p0)
        layers.append(Layer(patch, origin, float(d0), tuple(grad), p0, motion))
    return layers


def _path_length_grid(layer: Layer, traj, taus, mid_tau, centre, xs, ys) -> np.ndarray:
    """Path length (pixels) over the sub-frame times `taus` of the surface point of `layer`
    seen at frame position (xs, ys) at time `mid_tau`. The maps are affine, so the motion of
    each point is exact: p(tau) = M(tau) M(mid)^-1 p. xs, ys: grids of frame coordinates."""
    mid = _layer_affine(layer, traj, float(mid_tau), centre)
    a_inv = np.linalg.inv(mid[:, :2])
    pts = np.stack([xs.ravel() - mid[0, 2], ys.ravel() - mid[1, 2]])  # (2, N)
    src = a_inv @ pts  # patch coordinates
    total = np.zeros(src.shape[1])
    prev = None
    for tau in taus:
        m = _layer_affine(layer, traj, float(tau), centre)
        cur = m[:, :2] @ src + m[:, 2:3]
        if prev is not None:
            total += np.linalg.norm(cur - prev, axis=0)
        prev = cur
    return total.reshape(xs.shape)


def blur_extent_map(layers, traj, taus, mid_tau, centre, width, height, step=8) -> np.ndarray:
    """(H, W) float32: per-pixel blur extent of one frame, the path length in pixels during its
    exposure of the surface point visible at that pixel in the sharp (centre sub-frame) image.
    Layers are composited with their centre-time alpha in painter's order; each layer's path
    length is exact on a grid every `step` pixels and bilinear in between (it is smooth)."""
    gx = np.arange(0, width + step, step, dtype=np.float64)
    gy = np.arange(0, height + step, step, dtype=np.float64)
    xs, ys = np.meshgrid(gx, gy)
    extent = np.zeros((height, width), np.float32)
    for layer in layers:
        grid = _path_length_grid(layer, traj, taus, mid_tau, centre, xs, ys).astype(np.float32)
        dense = cv2.resize(grid, (len(gx) * step, len(gy) * step), interpolation=cv2.INTER_LINEAR)[
            :height, :width
        ]
        if layer.backdrop:
            extent[...] = dense
            continue
        m = _layer_affine(layer, traj, float(mid_tau), centre)
        alpha = cv2.warpAffine(
            np.ascontiguousarray(layer.patch[..., 3]), m, (width, height),
            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
        )  # fmt: skip
        extent += alpha * (dense - extent)
    return extent


def render_sequence(
    bank: PhotoBank,
    seed: int,
    width: int,
    height: int,
    frames: int = 1,
    cfg: SynthConfig | None = None,
) -> dict:
    """Render `frames` consecutive blurred/sharp frames of one random scene.

    Returns numpy arrays: "blur" uint8 (K, H, W, 3) RGB, "sharp" uint8 (K, H, W, 3) (centre
    sub-frame), "depth" float32 (K, H, W) in [0, 1] (normalised inverse depth of each sharp
    frame, 1 = nearest, min-max over the sequence), "extent" float32 (K, H, W) (per-pixel blur
    extent in pixels, see blur_extent_map), and scalars "extent_px" (path of the nearest object
    over one exposure, pixels) and "subframes" (samples per exposure: N times the
    supersampling factor of `cfg.subframe_step_px`). The extent maps are computed after all
    random draws, so they never change the other arrays.
    """
    cfg = cfg or SynthConfig()
    if frames < 1 or width < 8 or height < 8:
        raise ValueError("render_sequence needs frames >= 1 and width, height >= 8")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    scale = cfg.scale(width, height)
    n_sub = int(rng.choice(cfg.subframes))
    taus = _subframe_times(n_sub, frames)
    traj, extent = _make_trajectory(rng, cfg, scale, n_sub, width, height)
    layers = _build_scene(bank, rng, cfg, width, height, traj, taus, scale)
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    # Supersampling after every random draw, so the scene is the one rendered without it.
    n_sub *= supersampling(traj, layers, cfg, n_sub, width, height)
    taus = _subframe_times(n_sub, frames)

    blur = np.empty((frames, height, width, 3), np.uint8)
    sharp = np.empty((frames, height, width, 3), np.uint8)
    depth = np.empty((frames, height, width), np.float32)
    frame = np.zeros((height, width, 5), np.float32)
    for k in range(frames):
        acc = np.zeros((height, width, 3), np.float32)
        for j, tau in enumerate(taus[k]):
            mid = j == (n_sub - 1) // 2
            for layer in layers:
                _composite(frame, layer, _layer_affine(layer, traj, float(tau), centre))
            acc += frame[..., :3]
            if mid:
                sharp[k] = to_u8(linear_to_srgb(frame[..., :3]))
                depth[k] = frame[..., 4]
        blurred = linear_to_srgb(acc / n_sub)
        if cfg.noise_sigma > 0:
            blurred = blurred + rng.normal(0.0, cfg.noise_sigma, blurred.shape).astype(np.float32)
        blur[k] = to_u8(blurred)
    lo, hi = float(depth.min()), float(depth.max())
    depth = ((depth - lo) / max(hi - lo, 1e-6)).clip(0.0, 1.0).astype(np.float32)
    extent_maps = np.stack(
        [
            blur_extent_map(layers, traj, taus[k], taus[k][(n_sub - 1) // 2], centre, width, height)
            for k in range(frames)
        ]
    )
    return {
        "blur": blur, "sharp": sharp, "depth": depth, "extent": extent_maps,
        "extent_px": extent, "subframes": n_sub,
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
# writing a split


def sample_seed(seed: int, index: int) -> int:
    """The seed of sequence `index` of a split with seed `seed` (independent streams)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)[0])


def write_png(path: Path, img: np.ndarray) -> None:
    """Atomically write an RGB uint8 (H, W, 3) or a uint16/uint8 (H, W) PNG."""
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), img):
            raise OSError(f"{path}: could not write PNG")


def depth_to_u16(depth: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(depth * 65535.0), 0, 65535).astype(np.uint16)


EXTENT_SCALE = 100.0  # extent/ PNGs store pixels x 100 in 16 bits (0.01 px steps, up to 655 px)


def extent_to_u16(extent_px: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(extent_px * EXTENT_SCALE), 0, 65535).astype(np.uint16)


def extent_from_u16(raw: np.ndarray) -> np.ndarray:
    return raw.astype(np.float32) / np.float32(EXTENT_SCALE)


def write_split(
    out_root: str | Path,
    bank: PhotoBank,
    split: str,
    count: int,
    width: int,
    height: int,
    seed: int,
    frames: int = 1,
    progress: Callable[[int, int], None] | None = None,
    cfg: SynthConfig | None = None,
) -> dict:
    """Render `count` sequences of `frames` frames into GOPRO layout:
    OUT/{split}/SEQ/{blur,sharp,depth,extent}/NNNNNN.png (SEQ = 6-digit sequence index; depth
    is a 16-bit PNG of value * 65535, extent the per-pixel blur extent as a 16-bit PNG of
    pixels * 100, used to sample training crops where the blur is). Sequence i uses
    `sample_seed(seed, i)`. Every file is written atomically; sequences whose files all exist
    are skipped, so an interrupted run resumes (or a larger count extends the split). A split
    made with other settings (seed, size, frames, config, photos) raises OutputError rather
    than mixing scenes.
    Returns {"rendered": n, "skipped": n, "dir": path}."""
    cfg = cfg or SynthConfig()
    split_dir = Path(out_root) / split
    split_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "split": split, "count": count, "width": width, "height": height, "seed": seed,
        "frames": frames, "config": cfg.to_dict(), "photos": bank.names(),
    }  # fmt: skip
    meta_path = split_dir / "synth.json"
    if meta_path.exists():
        try:
            before = json.loads(meta_path.read_text())
        except ValueError:
            before = {}
        now = json.loads(json.dumps(meta))  # tuples -> lists, as stored
        if isinstance(before.get("config"), dict):
            # a field added since the split was rendered is None there (its old behaviour)
            before["config"] = {**dict.fromkeys(now["config"]), **before["config"]}
        changed = [k for k in now if k != "count" and before.get(k) != now[k]]
        if changed:
            raise OutputError(
                f"{split_dir}: was rendered with other settings ({', '.join(changed)} differ); "
                "render into another folder or delete this one"
            )
    write_text_atomic(meta_path, json.dumps(meta, indent=2) + "\n")
    rendered = skipped = 0
    for i in range(count):
        seq = split_dir / f"{i:06d}"
        names = [f"{k:06d}.png" for k in range(frames)]
        targets = [seq / sub / n for sub in ("blur", "sharp", "depth", "extent") for n in names]
        if all(t.exists() for t in targets):
            skipped += 1
        else:
            out = render_sequence(bank, sample_seed(seed, i), width, height, frames, cfg)
            for k, n in enumerate(names):
                if not (seq / "blur" / n).exists():
                    write_png(seq / "blur" / n, out["blur"][k])
                if not (seq / "sharp" / n).exists():
                    write_png(seq / "sharp" / n, out["sharp"][k])
                if not (seq / "depth" / n).exists():
                    write_png(seq / "depth" / n, depth_to_u16(out["depth"][k]))
                if not (seq / "extent" / n).exists():
                    write_png(seq / "extent" / n, extent_to_u16(out["extent"][k]))
            rendered += 1
        if progress is not None:
            progress(i + 1, count)
    return {"rendered": rendered, "skipped": skipped, "dir": str(split_dir)}


# --------------------------------------------------------------------------------------------
# preview


def contact_sheet(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], max_width=1536):
    """Rows of (blur RGB u8, sharp RGB u8, depth [0, 1]) -> one RGB uint8 sheet
    (blurred | sharp | depth), downscaled to at most `max_width` pixels wide."""
    lines = []
    for b, s, d in rows:
        gap = np.full((b.shape[0], 4, 3), 255, np.uint8)
        lines.append(np.concatenate([b, gap, s, gap, colorize(d, "inferno")], axis=1))
    width = max(line.shape[1] for line in lines)
    padded = []
    for line in lines:
        pad = np.full((line.shape[0], width - line.shape[1], 3), 255, np.uint8)
        padded.append(np.concatenate([line, pad], axis=1))
        padded.append(np.full((4, width, 3), 255, np.uint8))
    sheet = np.concatenate(padded[:-1], axis=0)
    if sheet.shape[1] > max_width:
        f = max_width / sheet.shape[1]
        size = (max_width, max(1, round(sheet.shape[0] * f)))
        sheet = cv2.resize(sheet, size, interpolation=cv2.INTER_AREA)
    return sheet
