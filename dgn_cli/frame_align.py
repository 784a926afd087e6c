"""Align a video window's neighbours to its centre frame before the video DGN sees them.

Why: the video DGN learned on synthetic sequences whose frames lie a few px apart. In real
footage a pan moves tens of px between frames (bikes.mp4: ~35 px from frame 73 to 74), and the
DGN then mixes the misaligned neighbours into the centre: doubled letters. So, as video
deblurring methods since DVD (Su et al. 2017) do, each neighbour is first warped onto the
centre with dense optical flow:

- Flow: OpenCV's DIS optical flow (Kroeger et al. 2016, preset "fast") between grey copies
  downscaled to at most MATCH_SIDE px, computed both ways; upsampled to full resolution.
  Dense flow, not one global shift: a camera following a car moves the car and the street in
  opposite directions, and a single shift aligns one of them only.
- Warp: bicubic resampling of the neighbour along the flow (centre(x) ~ neighbour(x + flow)).
- Trust: where the forward and backward flows disagree (occlusions, flat or blurred areas
  with no texture to match; more than 1 px + 5 % of the motion) or the flow leaves the frame,
  the centre frame's pixels are used instead, so nothing is invented there. A neighbour with
  less than MIN_VALID of its pixels trusted (a cut, a flash, another view) is replaced by the
  centre frame entirely: the DGN then sees a still window rather than a wrong one.

Mode "auto" (the default) warps only neighbours that moved farther than the video DGN saw in
training (TRAINED_MOTION_PX): within that range the DGN reads the motion between frames as a
cue and aligning it away costs PSNR; beyond it the DGN doubles edges. "all" warps every
neighbour; "off" gives the raw window.

Scene cuts are handled before this by the sliding window (video.window). Cost: ~30 ms per
neighbour at 640 px on one CPU core, small next to the DGN on a CPU (seconds a frame).
`global_shift` (one translation by phase correlation) is kept for measuring camera motion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

MATCH_SIDE = 640  # px: the long side the flow is computed at
MODES = ("auto", "all", "off")
# "auto" aligns a neighbour only when it moved farther than the video DGN saw in training:
# TRAINED_MOTION_PX per frame of distance from t, at 1280 px width (scaled with the width).
# The synthetic video split moves median flow p90 19 px (max 26) between t and t+-1 and p90
# 43 px (max 62) between t and t+-2 at 1280x720; the DGN uses that motion (aligning it all
# costs 0.77 dB there, BENCHMARKS "stretch 8"), so only motion beyond it is taken out.
TRAINED_MOTION_PX = 30.0
TRAINED_WIDTH = 1280
MIN_VALID = 0.25  # a neighbour with fewer trusted pixels than this is replaced by the centre
MIN_RESPONSE = 0.1  # phase-correlation peak below this: no match (a cut), not motion


@dataclass
class WindowAlignment:
    """What `align_window` did, per frame of the window in time order (centre: 0 and 1)."""

    motion_px: list[float] = field(default_factory=list)  # median flow length, full-res px
    warped: list[int] = field(default_factory=list)  # window positions warped onto the centre
    trusted: list[float] = field(default_factory=list)  # fraction of pixels taken from it
    replaced: list[int] = field(default_factory=list)  # window positions replaced by the centre

    @property
    def largest_motion(self) -> float:
        return max(self.motion_px, default=0.0)


def grey(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB, any range -> (H, W) float64 luma (ITU-R BT.601)."""
    return np.asarray(frame, dtype=np.float64) @ np.asarray((0.299, 0.587, 0.114))


def global_shift(ref: np.ndarray, moving: np.ndarray) -> tuple[float, float, float]:
    """(dx, dy, response): `moving` is about `ref` translated by (dx, dy) px (x right, y down).

    ref, moving: (H, W) grey float arrays of one size. response in [0, 1] is the height of the
    phase-correlation peak: near 1 for a clean translation, below MIN_RESPONSE for no match."""
    import cv2

    a, b = np.ascontiguousarray(ref, np.float64), np.ascontiguousarray(moving, np.float64)
    window = cv2.createHanningWindow(a.shape[::-1], cv2.CV_64F)  # no wrap-around edge response
    (dx, dy), response = cv2.phaseCorrelate(a, b, window)
    return float(dx), float(dy), float(response)


def to_numpy(frame: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) [0, 1] -> (H, W, 3) float32."""
    return np.ascontiguousarray(frame[0].detach().float().permute(1, 2, 0).cpu().numpy())


def small_grey8(rgb: np.ndarray, scale: float) -> np.ndarray:
    """(H, W, 3) float [0, 1] -> uint8 grey, resized by `scale` (DIS takes 8-bit images)."""
    import cv2

    g = np.clip(grey(rgb) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if scale < 1.0:
        size = (max(8, round(g.shape[1] * scale)), max(8, round(g.shape[0] * scale)))
        g = cv2.resize(g, size, interpolation=cv2.INTER_AREA)
    return g


@dataclass
class _Flow:
    """Optical flow from the centre frame to one neighbour, and how far it is trusted."""

    fwd: np.ndarray  # (h, w, 2) at the matching scale: centre(x) ~ neighbour(x + fwd(x))
    scale: float  # matching size / full size
    mask: np.ndarray  # (H, W, 1) bool at full size: pixels whose flow is trusted
    motion: float  # median flow length, full-size px

    @property
    def trusted(self) -> float:
        return float(self.mask.mean())


def measure_flow(centre: np.ndarray, neighbour: np.ndarray, size: tuple[int, int], scale: float):
    """DIS flow both ways between two `small_grey8` images; `size` (H, W) is the full size."""
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    fwd, bwd = dis.calc(centre, neighbour, None), dis.calc(neighbour, centre, None)
    sh, sw = centre.shape
    gx, gy = np.meshgrid(np.arange(sw, dtype=np.float32), np.arange(sh, dtype=np.float32))
    mx, my = gx + fwd[..., 0], gy + fwd[..., 1]
    back = cv2.remap(bwd, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    length = np.hypot(fwd[..., 0], fwd[..., 1])
    consistent = np.hypot(*(fwd + back).transpose(2, 0, 1)) <= 1.0 + 0.05 * length
    inside = (mx >= 0) & (mx <= sw - 1) & (my >= 0) & (my <= sh - 1)
    trusted = (consistent & inside).astype(np.float32)
    h, w = size
    if scale < 1.0:  # trust to full resolution
        trusted = cv2.resize(trusted, (w, h), interpolation=cv2.INTER_LINEAR)
    mask = (trusted >= 0.5)[..., None]
    return _Flow(fwd, scale, mask, float(np.median(length) / scale))


def warp_to_centre(centre: np.ndarray, neighbour: np.ndarray, flow: _Flow) -> np.ndarray:
    """(H, W, 3) float32 [0, 1]: `neighbour` warped along `flow` where it is trusted, `centre`
    elsewhere."""
    import cv2

    h, w = centre.shape[:2]
    fwd = flow.fwd
    if flow.scale < 1.0:  # flow to full resolution (flow lengths grow with the size)
        fwd = cv2.resize(fwd, (w, h), interpolation=cv2.INTER_LINEAR) * np.float32(1 / flow.scale)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    warped = cv2.remap(
        neighbour, gx + fwd[..., 0], gy + fwd[..., 1], cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip
    return np.where(flow.mask, np.clip(warped, 0.0, 1.0), centre)


@dataclass
class WindowFlows:
    """The flows from a window's centre frame to each of its neighbours, measured once and
    shared by alignment and parallax depth (each would otherwise repeat the DIS pass)."""

    centre: np.ndarray  # (H, W, 3) float32 [0, 1]: the centre frame
    neighbours: dict[int, np.ndarray]  # window position -> (H, W, 3) float32 frame
    flows: dict[int, _Flow]  # window position -> flow from the centre to it
    # positions absent from both: the centre, and reflected copies of it at the clip's edges

    @property
    def size(self) -> tuple[int, int]:
        return self.centre.shape[0], self.centre.shape[1]


def window_flows(frames: torch.Tensor, count: int) -> WindowFlows:
    """DIS flows from the centre frame of a (1, 3 * count, H, W) [0, 1] window to each
    neighbour that is not a copy of the centre (reflected clip edges)."""
    parts = frames.split(frames.shape[1] // count, dim=1)
    mid = count // 2
    centre = to_numpy(parts[mid])
    size = centre.shape[:2]
    scale = min(1.0, MATCH_SIDE / max(size))
    centre_small = small_grey8(centre, scale)  # once per window, not once per neighbour
    result = WindowFlows(centre, {}, {})
    for k, part in enumerate(parts):
        if k == mid or torch.equal(part, parts[mid]):
            continue
        neighbour = to_numpy(part)
        result.neighbours[k] = neighbour
        result.flows[k] = measure_flow(centre_small, small_grey8(neighbour, scale), size, scale)
    return result


def align_window(
    frames: torch.Tensor, count: int, mode: str = "auto", flows: WindowFlows | None = None
) -> tuple[torch.Tensor, WindowAlignment]:
    """Warp the neighbours of a (1, 3 * count, H, W) [0, 1] window onto its centre frame:
    all of them (mode "all"), or those that moved farther than training showed ("auto").
    `flows`: the window's `window_flows`, when the caller has them already.

    Returns the aligned window (same shape, dtype and device) and what was done. A one-frame
    window is returned as is."""
    if mode not in MODES:
        raise ValueError(f"align mode must be one of {', '.join(MODES)}, got {mode!r}")
    report = WindowAlignment(motion_px=[0.0] * count, trusted=[1.0] * count)
    if count <= 1:
        return frames, report
    if flows is None:
        flows = window_flows(frames, count)
    parts = list(frames.split(frames.shape[1] // count, dim=1))
    mid = count // 2
    per_frame = TRAINED_MOTION_PX * flows.size[1] / TRAINED_WIDTH
    for k, flow in flows.flows.items():
        report.motion_px[k], report.trusted[k] = round(flow.motion, 2), round(flow.trusted, 3)
        if mode == "auto" and flow.motion <= per_frame * abs(k - mid):
            continue  # within the motion the DGN was trained on: leave it (and skip the warp)
        if flow.trusted < MIN_VALID:
            parts[k] = parts[mid]
            report.replaced.append(k)
            continue
        report.warped.append(k)
        aligned = warp_to_centre(flows.centre, flows.neighbours[k], flow)
        part = parts[k]
        parts[k] = torch.from_numpy(aligned).permute(2, 0, 1)[None].to(part.device, part.dtype)
    return torch.cat(parts, dim=1), report
