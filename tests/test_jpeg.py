"""JPEG-compressed training inputs (`dgn train --jpeg P`): real photos and decoded video are
compressed, the synthetic splits lossless. `dgn benchmark --jpeg Q` is tested in
test_benchmark.py."""

import numpy as np
import pytest
import torch
from test_data_datasets import _photos, make_tree

from dgn_cli.data.augment import jpeg_roundtrip, maybe_jpeg
from dgn_cli.data.datasets import PairedFolderDataset, SynthDataset
from dgn_cli.errors import InputError
from dgn_cli.train import TrainConfig


def _texture(h=48, w=64, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xs / 3.0), np.cos(ys / 4.0), np.sin((xs + ys) / 5.0)], axis=2)
    return np.clip(0.5 + 0.3 * base + 0.05 * rng.standard_normal((h, w, 3)), 0, 1)


def test_jpeg_roundtrip_keeps_colours_shape_and_dtype_and_loses_more_at_low_quality():
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 200  # RGB in, RGB out (OpenCV's BGR handled inside)
    assert jpeg_roundtrip(red, 90)[8, 8].tolist() == pytest.approx([200, 0, 0], abs=3)
    x = _texture().astype(np.float32)
    errors = []
    for q in (95, 75, 40):
        y = jpeg_roundtrip(x, q)
        assert y.shape == x.shape and y.dtype == np.float32
        errors.append(float(np.abs(y - x).mean()))
    assert 0 < errors[0] < errors[1] < errors[2]
    # A 5-frame window: each frame compressed on its own (a flat frame stays flat).
    window = np.concatenate([x, np.full_like(x, 0.5), x], axis=2)
    out = jpeg_roundtrip(window, 60)
    assert np.abs(out[..., 3:6] - 0.5).max() < 3 / 255
    assert np.array_equal(out[..., :3], out[..., 6:])
    with pytest.raises(ValueError, match="3k"):
        jpeg_roundtrip(np.zeros((8, 8, 4), np.uint8), 90)


def test_maybe_jpeg_at_zero_leaves_input_and_random_stream_alone():
    x = _texture().astype(np.float32)
    a, b = np.random.default_rng(1), np.random.default_rng(1)
    assert maybe_jpeg(x, a, 0.0) is x
    assert a.random() == b.random()  # nothing drawn
    assert not np.array_equal(maybe_jpeg(x, np.random.default_rng(1), 1.0), x)


def test_folder_and_synth_training_items_are_compressed_when_asked(tmp_path):
    root = make_tree(tmp_path / "g", "gopro", h=32, w=40)
    plain = PairedFolderDataset(root, crop=24, augment=True, noise_sigma=0.0, seed=3)
    packed = PairedFolderDataset(
        root, crop=24, augment=True, noise_sigma=0.0, seed=3, jpeg_prob=1.0
    )
    item, jpeg_item = plain[2], packed[2]
    assert torch.equal(item["sharp"], jpeg_item["sharp"])  # same crop and flips
    assert torch.equal(item["blur"], item["sharp"])  # blur == sharp on disk...
    assert not torch.equal(jpeg_item["blur"], jpeg_item["sharp"])  # ...until compressed
    assert float((jpeg_item["blur"] - jpeg_item["sharp"]).abs().mean()) < 0.1
    assert torch.equal(packed[2]["blur"], jpeg_item["blur"])  # a pure function of (seed, i)
    half = PairedFolderDataset(root, crop=24, augment=True, noise_sigma=0.0, seed=3, jpeg_prob=0.5)
    changed = [not torch.equal(half[i]["blur"], half[i]["sharp"]) for i in range(len(half))]
    assert any(changed) and not all(changed)

    photos = _photos(tmp_path / "photos")
    synth = [SynthDataset(photos, 2, size=32, seed=1, jpeg_prob=p) for p in (0.0, 1.0)]
    assert torch.equal(synth[0][0]["sharp"], synth[1][0]["sharp"])
    assert not torch.equal(synth[0][0]["blur"], synth[1][0]["blur"])


def test_train_config_checks_the_probability():
    with pytest.raises(InputError, match="--jpeg"):
        TrainConfig(jpeg=1.5)
