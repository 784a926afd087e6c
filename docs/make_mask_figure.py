"""Regenerate the README's depth-mask figure: input | depth mask | result with --keep-background.

    python docs/make_mask_figure.py

Runs the shipped weights (dgn-image, dgn-depth-small) on the CPU through the Python API on the
shipped sample (weights/samples/blurry.png, a synthetic depth-aware blur of real photographs)
and writes docs/keep-background.jpg. The mask is white where the deblurred result is used and
black where the input is kept (far: what a photographer's bokeh or haze would be). Prints the
share of pixels deblurred and how much the kept part moved (it must not).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dgn_cli import Deblurrer

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "weights" / "samples" / "blurry.png"
OUT = ROOT / "docs" / "keep-background.jpg"


def main() -> None:
    image = cv2.imread(str(SAMPLE))[:, :, ::-1].copy()  # RGB
    deblurrer = Deblurrer(weights="dgn-image", device="cpu", precision="fp32")
    mask = deblurrer.mask(image, keep_background=True)
    result = deblurrer.deblur(image, keep_background=True)
    mask_rgb = np.repeat((mask * 255 + 0.5).astype(np.uint8)[:, :, None], 3, axis=2)
    gap = np.full((image.shape[0], 6, 3), 255, np.uint8)
    row = np.concatenate([image, gap, mask_rgb, gap, result], axis=1)
    cv2.imwrite(str(OUT), row[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    kept = mask == 0
    moved = np.abs(result.astype(int) - image.astype(int))[kept].max() if kept.any() else 0
    print(f"wrote {OUT}: {mask.mean():.0%} deblurred, kept pixels moved at most {moved}/255")


if __name__ == "__main__":
    main()
