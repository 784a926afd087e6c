"""The weights the repository ships: they load offline by name and do their job on the shipped
sample (a CC0 synthetic blurred/sharp pair), which is what a user's first command runs on."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from dgn_cli import checkpoints
from dgn_cli.api import Deblurrer
from dgn_cli.metrics import psnr_np

SAMPLES = Path(__file__).resolve().parent.parent / "weights" / "samples"
# The shipped dgn-image measured +0.38 dB on the sample (19.76 -> 20.14 dB):
# a broken export, a wrong default or a colour/range slip fails this.
MIN_SAMPLE_GAIN_DB = 0.2


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def sample():
    return read_rgb(SAMPLES / "blurry.png"), read_rgb(SAMPLES / "sharp.png")


@pytest.mark.parametrize("name", ["dgn-image", "dgn-video", "dgn-baseline", "dgn-depth-small"])
def test_every_default_checkpoint_is_shipped_and_verified(name):
    path = checkpoints.resolve_checkpoint(name, download=False)  # sha256-checked
    assert path.is_file() and path.suffix == ".safetensors"


def test_the_shipped_dgn_sharpens_the_shipped_sample(sample):
    blurry, sharp = sample
    restored = Deblurrer(device="cpu", precision="fp32").deblur(blurry)
    assert restored.shape == blurry.shape and restored.dtype == np.uint8
    gain = psnr_np(restored, sharp) - psnr_np(blurry, sharp)
    assert gain > MIN_SAMPLE_GAIN_DB, f"only {gain:+.2f} dB on the shipped sample"
