"""Training the video DGN on the D_b it gets at inference with --video-depth parallax
(`dgn train --task video --depth-model parallax`, dgn_cli.data.parallax_cache)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dgn_cli.cli import app
from dgn_cli.data.datasets import PairedFolderDataset
from dgn_cli.data.synth import depth_to_u16, write_png
from dgn_cli.errors import OutputError
from dgn_cli.parallax_depth import window_parallax_depth
from dgn_cli.train.config import TrainConfig
from tests.test_parallax_depth import SQUARE, as_window, parallax_frames

COUNT = 8  # frames per sequence


def write_sequence(root, split: str, frames: np.ndarray) -> None:
    """A GOPRO-layout sequence: blur/ (the moving frames), sharp/ (the same) and depth/."""
    seq = root / split / "seq0"
    for k, frame in enumerate(frames):
        rgb = np.clip(frame * 255 + 0.5, 0, 255).astype(np.uint8)
        write_png(seq / "blur" / f"{k:04d}.png", rgb)
        write_png(seq / "sharp" / f"{k:04d}.png", rgb)
        write_png(seq / "depth" / f"{k:04d}.png", depth_to_u16(np.full(frame.shape[:2], 0.5)))


@pytest.fixture
def translating_clip(tmp_path):
    frames = parallax_frames(count=COUNT, step=(4.0, 1.0))
    root = tmp_path / "clip"
    for split in ("train", "test"):
        write_sequence(root, split, frames)
    return root, frames


def test_the_dataset_serves_each_windows_parallax_depth_from_a_cache(translating_clip, tmp_path):
    root, frames = translating_clip
    cache = tmp_path / "cache"

    def dataset():
        return PairedFolderDataset(root, frames=5, crop=None, augment=False, parallax_depth=True,
                                   cache_dir=cache)  # fmt: skip

    data = dataset()
    assert data.computed_depth_maps == COUNT
    t = 4  # frames 2..6: the window as deblur-video would see it
    saved = np.clip(frames[t - 2 : t + 3] * 255 + 0.5, 0, 255).astype(np.uint8) / 255.0
    expected = window_parallax_depth(as_window(saved.astype(np.float32)), 5)
    d_b = data[t]["depth_init"]
    assert d_b.shape == (1, *frames.shape[1:3])
    assert torch.allclose(d_b, expected[0], atol=1e-4)  # the same map, 16-bit in the cache
    assert d_b[0][SQUARE].mean() > 0.7 and d_b[0, :, :40].mean() < 0.15  # near square, far back
    assert dataset().computed_depth_maps == 0  # read back, not computed again
    meta = json.loads(next(cache.rglob("parallax.json")).read_text())
    assert meta["computed"] == COUNT and meta["flat"] == 0
    # another clip with the same sequence name is not served this one's maps
    other = tmp_path / "other"
    write_sequence(other, "train", frames[::-1])
    with pytest.raises(OutputError, match="holds the maps of"):
        PairedFolderDataset(other, frames=5, crop=None, parallax_depth=True, cache_dir=cache)


def test_a_still_window_gets_a_flat_map(tmp_path):
    still = np.repeat(parallax_frames(count=1), 6, axis=0)
    root = tmp_path / "still"
    write_sequence(root, "train", still)
    data = PairedFolderDataset(root, frames=5, crop=None, augment=False, parallax_depth=True,
                               cache_dir=tmp_path / "cache")  # fmt: skip
    assert torch.count_nonzero(data[2]["depth_init"]) == 0


def test_parallax_d_b_needs_video_and_folder_data(tmp_path):
    with pytest.raises(Exception, match="needs --task video"):
        TrainConfig(task="image", data=str(tmp_path), depth_model="parallax")
    with pytest.raises(Exception, match="not 'synth'"):
        TrainConfig(task="video", data="synth", depth_model="parallax")
    root = tmp_path / "nodepth" / "train" / "seq0"
    for kind in ("blur", "sharp"):
        write_png(root / kind / "0000.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(Exception, match="no depth/ folder.*parallax"):
        PairedFolderDataset(root.parent.parent, frames=5, parallax_depth=True,
                            cache_dir=tmp_path / "cache")  # fmt: skip


def test_dgn_train_video_on_parallax_depth(translating_clip, tmp_path, tiny_train_args):
    root, _ = translating_clip
    out = tmp_path / "run"
    cmd = [
        "train", "--task", "video", "--data", str(root), "--depth-model", "parallax",
        "--steps", "2", "--batch-size", "2", "--crop", "64", "--lambda-p", "0",
        "--out", str(out), "--workers", "0", "--precision", "fp32", "--val-every", "0",
        "--val-count", "1", "--depth-cache", str(tmp_path / "cache"), "--quiet",
        *tiny_train_args(),
    ]  # fmt: skip
    result = CliRunner().invoke(app, cmd)
    assert result.exit_code == 0, result.output
    assert (out / "checkpoint.pt").is_file()
    assert len(list((tmp_path / "cache").rglob("depth_init/*.png"))) == 2 * COUNT  # train, test
    bad = CliRunner().invoke(app, [*cmd[:2], "image", *cmd[3:]])
    assert bad.exit_code == 1 and "needs --task video" in bad.output
