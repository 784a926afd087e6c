"""Is a deblurred video sharper than its input, where the camera moves? (issue 13's bikes.mp4)

    python scripts/campaign/video_sharpness.py INPUT.mp4 DEBLURRED.mp4 [--figure OUT.png]

Prints one JSON line: the mean ratio of the variance of the Laplacian (edge energy, grey
frames) deblurred / input over all frames, and over the half of the frames with the most
camera motion. Camera motion of frame t is the global shift between frames t-1 and t found by
phase correlation (px); a scene cut answers with a low response and counts as no motion, so
cuts do not pass for motion the way a frame difference would. --figure writes input | output
of the frame with the most motion, cropped to its middle and zoomed 2x, for looking at.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np

from dgn_cli.frame_align import MIN_RESPONSE, global_shift, grey
from dgn_cli.metrics import laplacian_variance


def camera_motion(frames: list[np.ndarray]) -> np.ndarray:
    """(T,) px of global shift from the previous frame (0 for the first frame and at cuts)."""
    motion = np.zeros(len(frames))
    for t in range(1, len(frames)):
        dx, dy, response = global_shift(grey(frames[t - 1]), grey(frames[t]))
        motion[t] = np.hypot(dx, dy) if response >= MIN_RESPONSE else 0.0
    return motion


def measure(inputs: list[np.ndarray], outputs: list[np.ndarray]) -> dict:
    if len(inputs) != len(outputs):
        raise SystemExit(f"frame counts differ: input {len(inputs)}, output {len(outputs)}")
    ratios = np.array(
        [
            laplacian_variance(o) / max(laplacian_variance(i), 1e-9)
            for i, o in zip(inputs, outputs, strict=True)
        ]
    )
    motion = camera_motion(inputs)
    moving = np.argsort(-motion)[: max(1, len(motion) // 2)]
    return {
        "frames": len(inputs),
        "laplacian_ratio_all": round(float(ratios.mean()), 3),
        "laplacian_ratio_moving_half": round(float(ratios[moving].mean()), 3),
        "moving_half_min_shift_px": round(float(motion[moving].min()), 2),
        "most_motion_frame": int(moving[0]),
        "most_motion_shift_px": round(float(motion[moving[0]]), 2),
    }


def figure(inp: np.ndarray, out: np.ndarray, path: Path) -> None:
    h, w = inp.shape[:2]
    y0, x0, ch, cw = h // 4, w // 4, h // 2, w // 2
    crops = [im[y0 : y0 + ch, x0 : x0 + cw] for im in (inp, out)]
    gap = np.full((ch, 4, 3), 255, np.uint8)
    row = np.concatenate([crops[0], gap, crops[1]], axis=1)
    row = cv2.resize(row, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(path), cv2.cvtColor(row, cv2.COLOR_RGB2BGR))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input", type=Path)
    ap.add_argument("deblurred", type=Path)
    ap.add_argument("--figure", type=Path, help="input | output of the most-motion frame")
    args = ap.parse_args()
    inputs = list(iio.imiter(args.input))
    outputs = list(iio.imiter(args.deblurred))
    report = measure(inputs, outputs)
    if args.figure:
        t = report["most_motion_frame"]
        figure(inputs[t], outputs[t], args.figure)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
