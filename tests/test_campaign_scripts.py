"""The campaign's measuring scripts (scripts/campaign/) give numbers that mean what they say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts" / "campaign"
STILL, PAN, SHIFT = 6, 6, 4  # frames without motion, then frames panning SHIFT px each


def _clip(size: int = 64) -> list[np.ndarray]:
    """STILL frames of one view, then PAN frames panning SHIFT px per frame."""
    rng = np.random.default_rng(0)
    texture = cv2.resize(
        rng.integers(0, 256, (48, 48, 3), dtype=np.uint8), (160, 160), interpolation=cv2.INTER_CUBIC
    )
    xs = [0] * STILL + [SHIFT * (k + 1) for k in range(PAN)]
    return [np.ascontiguousarray(texture[16 : 16 + size, x + 16 : x + 16 + size]) for x in xs]


def _run(tmp_path: Path, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> dict:
    a, b, fig = tmp_path / "in.mp4", tmp_path / "out.mp4", tmp_path / "fig.png"
    iio.imwrite(a, np.stack(inputs), fps=10, quality=10)
    iio.imwrite(b, np.stack(outputs), fps=10, quality=10)
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "video_sharpness.py"), str(a), str(b), "--figure", str(fig)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert fig.is_file() and cv2.imread(str(fig)).shape == (64, 2 * 64 + 8, 3)  # 2x zoom of halves
    return json.loads(done.stdout)


def test_video_sharpness_sees_a_sharper_output_and_finds_the_moving_frames(tmp_path):
    sharp = _clip()
    blurred = [cv2.GaussianBlur(f, (0, 0), 1.5) for f in sharp]
    report = _run(tmp_path, blurred, sharp)
    assert report["frames"] == STILL + PAN
    assert report["laplacian_ratio_all"] > 2 and report["laplacian_ratio_moving_half"] > 2
    # the moving half is the panning frames, found by their shift, not the still ones
    assert report["most_motion_frame"] >= STILL
    assert abs(report["most_motion_shift_px"] - SHIFT) < 1
    assert report["moving_half_min_shift_px"] > SHIFT / 2

    same = _run(tmp_path, blurred, blurred)
    assert same["laplacian_ratio_all"] == 1.0 and same["laplacian_ratio_moving_half"] == 1.0
