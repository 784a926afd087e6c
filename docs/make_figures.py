"""Regenerate the README's before/after figures with the shipped weights.

    python docs/make_figures.py REAL_DIR

REAL_DIR holds the real blurred photographs of ../shared/DATA.md (text_motion.jpg,
licenseplate_motion.jpg from opencv-doc; clock_motion.png from scikit-image). Writes docs/*.jpg
and prints what it measured: PSNR of the shipped sample against its sharp frame, and for each
photo how much the edge energy (variance of the Laplacian) rose.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from dgn_cli.metrics import laplacian_variance, psnr_np

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SAMPLES = ROOT / "weights" / "samples"
REAL = ("text_motion.jpg", "licenseplate_motion.jpg", "clock_motion.png")
ZOOM = (0, 60, 240, 200)  # x, y, width, height of the sample's zoomed figure


def deblur(src: Path, out: Path) -> None:
    cmd = [sys.executable, "-m", "dgn_cli", "deblur-image", str(src), "-o", str(out)]
    subprocess.run([*cmd, "--compare", "--quiet", "--overwrite"], check=True)


def save_jpg(path: Path, img: np.ndarray) -> None:
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 88])


def main(real_dir: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        out = tmp / "sample.png"
        deblur(SAMPLES / "blurry.png", out)
        blurry, sharp = (
            cv2.imread(str(SAMPLES / "blurry.png")),
            cv2.imread(str(SAMPLES / "sharp.png")),
        )
        restored = cv2.imread(str(out))
        save_jpg(DOCS / "before-after.jpg", cv2.imread(str(tmp / "sample.compare.png")))
        x, y, w, h = ZOOM
        crops = [im[y : y + h, x : x + w] for im in (blurry, restored, sharp)]
        gap = np.full((h, 4, 3), 255, np.uint8)
        row = np.concatenate([crops[0], gap, crops[1], gap, crops[2]], axis=1)
        save_jpg(
            DOCS / "before-after-zoom.jpg",
            cv2.resize(row, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST),
        )
        before, after = psnr_np(blurry, sharp), psnr_np(restored, sharp)
        print(f"sample: blurry {before:.2f} dB -> deblurred {after:.2f} dB")

        for name in REAL:
            src = real_dir / name
            out = tmp / f"{Path(name).stem}.png"
            deblur(src, out)
            before, after = cv2.imread(str(src)), cv2.imread(str(out))
            compare = cv2.imread(str(tmp / f"{Path(name).stem}.compare.png"))
            save_jpg(DOCS / f"real-{Path(name).stem}.jpg", compare)
            ratio = laplacian_variance(after, bgr=True) / max(
                laplacian_variance(before, bgr=True), 1e-9
            )
            print(f"{name}: variance of the Laplacian x{ratio:.2f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
