"""`dgn train --task depth --depth-target extent`: the estimator learns the renderer's per-pixel
blur extent (a crop can read it from its own pixels), is read relative, and is validated
against the reference depth."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from tiny import dihedral
from typer.testing import CliRunner

from dgn_cli.cli import app
from dgn_cli.data.datasets import PairedFolderDataset, SynthDataset
from dgn_cli.data.render_pool import FramePool
from dgn_cli.data.synth import PhotoBank, render_sequence, sample_seed, write_split
from dgn_cli.errors import InputError
from dgn_cli.train import TrainConfig
from dgn_cli.train.model import EXTENT_TARGET_PX, batch_loss, extent_target

runner = CliRunner()


def test_synth_items_carry_the_extent_under_the_same_augmentation_as_depth(photos):
    plain = SynthDataset(photos, length=4, size=24, seed=3, augment=False, with_extent=True)
    rendered = render_sequence(PhotoBank(photos), sample_seed(3, 1), 24, 24, 1, plain.cfg)
    item = plain[1]
    assert item["extent"].shape == (1, 24, 24) and item["extent"].dtype == torch.float32
    assert np.allclose(item["extent"][0].numpy(), rendered["extent"][0])  # pixels, not [0, 1]
    assert item["extent"].max() > 1  # this scene is blurred by more than a pixel somewhere
    aug = SynthDataset(photos, length=4, size=24, seed=3, with_extent=True)
    for epoch in range(3):
        aug.set_epoch(epoch)
        moved = aug[1]
        (k,) = [k for k, d in enumerate(dihedral(item["depth"])) if torch.equal(d, moved["depth"])]
        assert torch.equal(dihedral(item["extent"])[k], moved["extent"])
    assert "extent" not in SynthDataset(photos, length=4, size=24, seed=3)[1]


def test_folder_items_read_the_written_extent_maps(photos, tmp_path):
    write_split(tmp_path / "s", PhotoBank(photos), "train", 2, 32, 24, seed=5)
    disk = PairedFolderDataset(tmp_path / "s", crop=None, augment=False, with_extent=True)
    ram = SynthDataset(photos, length=2, size=(32, 24), seed=5, augment=False, with_extent=True)
    for i in range(2):
        assert torch.allclose(disk[i]["extent"], ram[i]["extent"], atol=0.006)  # 0.01-px steps
    cropped = PairedFolderDataset(tmp_path / "s", crop=16, seed=1, with_extent=True)[0]
    assert cropped["extent"].shape == cropped["depth"].shape == (1, 16, 16)

    shutil.rmtree(tmp_path / "s" / "train" / "000001" / "extent")
    with pytest.raises(InputError, match=r"000001/extent/000000\.png: no blur-extent map"):
        PairedFolderDataset(tmp_path / "s", crop=None, with_extent=True)
    PairedFolderDataset(tmp_path / "s", crop=None)  # without the extent target: still readable


def test_frame_pool_batches_carry_the_extent_when_asked(photos):
    with FramePool(photos, crop=32, size=(96, 64), with_extent=True, augment=False) as pool:
        batch = pool.next_batch(3)
    assert batch["extent"].shape == batch["depth"].shape == (3, 1, 32, 32)
    assert batch["extent"].dtype == torch.float32 and batch["extent"].min() >= 0
    assert batch["extent"].max() > 0
    with FramePool(photos, crop=32, size=(96, 64)) as pool:
        assert "extent" not in pool.next_batch(1)


def test_the_extent_target_is_linear_in_pixels_and_clipped():
    px = torch.tensor([0.0, EXTENT_TARGET_PX / 4, EXTENT_TARGET_PX, 3 * EXTENT_TARGET_PX])
    assert torch.equal(extent_target(px), torch.tensor([0.0, 0.25, 1.0, 1.0]))


def test_the_depth_task_learns_the_extent_not_the_depth_when_told():
    class Half(torch.nn.Module):  # an estimator that answers 0.5 everywhere
        def forward(self, image):
            return torch.full_like(image[:, :1], 0.5)

    batch = {
        "blur": torch.zeros(1, 3, 8, 8),
        "depth": torch.zeros(1, 1, 8, 8),
        "extent": torch.full((1, 1, 8, 8), EXTENT_TARGET_PX / 2),  # target 0.5
    }
    from dgn_cli.losses import DepthLoss

    for target, expected in (("depth", 0.25), ("extent", 0.0)):
        c = TrainConfig(task="depth", depth_target=target)
        loss, _ = batch_loss(Half(), batch, c, DepthLoss(0.5), None)
        assert float(loss) == pytest.approx(expected)


def test_the_extent_target_is_for_the_depth_task_only(tmp_path, tiny_train_args):
    with pytest.raises(InputError, match="--task depth"):
        TrainConfig(task="image", depth_target="extent")
    with pytest.raises(InputError, match="choose depth or extent"):
        TrainConfig(task="depth", depth_target="blur")
    result = runner.invoke(
        app, ["train", "--task", "image", "--depth-target", "extent", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 1
    assert "--depth-target extent is for --task depth" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_trains_an_extent_estimator_read_relative_and_scored_against_depth(
    photos, tmp_path, tiny_train_args
):
    from dgn_cli.checkpoints import load_depth_estimator
    from dgn_cli.train import load_checkpoint

    bank = PhotoBank(photos)
    write_split(tmp_path / "s", bank, "train", 3, 48, 32, seed=1)
    write_split(tmp_path / "s", bank, "test", 2, 48, 32, seed=2)
    out, weights = tmp_path / "run", tmp_path / "weights"
    result = runner.invoke(
        app,
        ["train", "--task", "depth", "--depth-target", "extent", "--data", str(tmp_path / "s"),
         "--steps", "3", "--batch-size", "2", "--crop", "16", "--val-every", "3",
         "--val-count", "2", "--out", str(out), "--precision", "fp32", "--workers", "0",
         "--export", "toy-extent", "--export-dir", str(weights), "--quiet", "--json",
         *tiny_train_args("depth")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert -1 <= summary["val"]["depth_pearson"] <= 1 and 0 <= summary["val"]["depth_rmse"] <= 1
    stored = json.loads(load_checkpoint(out / "checkpoint.pt")["config"])
    assert stored["depth_target"] == "extent"
    estimator = load_depth_estimator(weights / "toy-extent.safetensors")
    assert estimator.net.config.relative  # its answer is a blur size: read min-max normalised
    torch.nn.init.normal_(estimator.net.head.weight, std=0.5)  # 3 steps leave it nearly flat
    with torch.no_grad():
        depth = estimator(torch.rand(1, 3, 24, 32))
    assert depth.amin() == 0 and depth.amax() == 1
