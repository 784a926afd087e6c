"""The Python API: `Deblurrer(...).deblur(image) -> image`, same dtype and shape."""

import numpy as np
import pytest

from dgn_cli.api import Deblurrer

RNG = np.random.default_rng(2)


@pytest.fixture(scope="module")
def deblurrer(tiny_checkpoints):
    # "image": a random last conv (a fresh DGN is the identity: output = input, D_r = D_b)
    return Deblurrer(
        weights=str(tiny_checkpoints["image"]),
        depth_model=str(tiny_checkpoints["depth"]),
        device="cpu",
        precision="fp32",
    )


@pytest.mark.parametrize(
    "shape, dtype",
    [((30, 40, 3), np.uint8), ((30, 40, 3), np.uint16), ((30, 40), np.uint8),
     ((30, 40, 1), np.uint16), ((30, 40, 4), np.uint8), ((30, 40, 3), np.float32),
     ((30, 40, 3), np.float64)],
)  # fmt: skip
def test_same_dtype_and_shape(deblurrer, shape, dtype):
    if np.dtype(dtype).kind == "f":
        image = RNG.random(shape).astype(dtype)
    else:
        image = RNG.integers(0, np.iinfo(dtype).max + 1, size=shape).astype(dtype)
    out = deblurrer.deblur(image)
    assert out.dtype == image.dtype and out.shape == image.shape
    assert not np.array_equal(out, image)
    if len(shape) == 3 and shape[2] == 4:
        np.testing.assert_array_equal(out[:, :, 3], image[:, :, 3])  # alpha untouched
    if np.dtype(dtype).kind == "f":
        assert 0 <= out.min() and out.max() <= 1


def test_depth_maps(deblurrer):
    image = RNG.integers(0, 256, size=(30, 40, 3)).astype(np.uint8)
    initial = deblurrer.depth(image)
    refined = deblurrer.depth(image, refined=True)
    assert initial.shape == refined.shape == (30, 40) and initial.dtype == np.float32
    assert 0 <= initial.min() and initial.max() <= 1 and not np.array_equal(initial, refined)


def test_bad_inputs_rejected(deblurrer):
    with pytest.raises(ValueError, match="dtype"):
        deblurrer.deblur(np.zeros((4, 4, 3), np.int64))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        deblurrer.deblur(np.zeros((4, 4, 5), np.uint8))
