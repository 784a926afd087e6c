"""SynthDataset and PairedFolderDataset: layouts, windows, augmentation, depth cache."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from tiny import dihedral, write_smooth_photos
from torch import nn

from dgn_cli.data.datasets import (
    PairedFolderDataset,
    SynthDataset,
    make_loader,
)
from dgn_cli.data.gopro import CACHE_SOURCE_FILE
from dgn_cli.data.synth import PhotoBank, write_split
from dgn_cli.errors import InputError, OutputError
from dgn_cli.tensors import reflect_index


def _photos(folder, n=3):
    return write_smooth_photos(folder, n)


def _frame(value: int, h=20, w=24) -> np.ndarray:
    """An asymmetric test image whose mean encodes `value` (so flips/rotations are visible)."""
    ys, xs = np.mgrid[0:h, 0:w]
    img = np.stack([(xs * 3) % 50, (ys * 5) % 50, (xs + 2 * ys) % 50], axis=2) + value
    return img.astype(np.uint8)


def _write(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def make_tree(root, layout: str, seqs=(("a", 3), ("b", 4)), depth=True, h=20, w=24):
    """Tiny dataset: blurred frame j of sequence s has mean ~ 10*j + 100*s; sharp is the same
    image (so a test can see which frame went where); depth is a 16-bit copy of channel 0
    as stored (OpenCV writes BGR, so the blue channel)."""
    for si, (name, n) in enumerate(seqs):
        for j in range(n):
            img = _frame(10 * j + 100 * si, h, w)
            dep = (img[..., 0].astype(np.float64) / 255 * 65535).astype(np.uint16)
            stem = f"{j:06d}.png"
            if layout == "gopro":
                dirs = {k: root / "train" / name / k for k in ("blur", "sharp", "depth")}
            elif layout == "reds":
                dirs = {k: root / "train" / k / name for k in ("blur", "sharp", "depth")}
            else:
                dirs = {k: root / k for k in ("blur", "sharp", "depth")}
                stem = f"{name}{j:06d}.png"
            _write(dirs["blur"] / stem, img)
            _write(dirs["sharp"] / stem, img)
            if depth:
                _write(dirs["depth"] / stem, dep)
    return root


def test_frames_sorted_numerically(tmp_path):
    for j in (1, 2, 10):
        for sub in ("blur", "sharp", "depth"):
            _write(tmp_path / sub / f"f{j}.png", _frame(10 * j))
    ds = PairedFolderDataset(tmp_path, crop=None, augment=False)
    assert [ds.frame_name(i) for i in range(3)] == ["f1", "f2", "f10"]


def test_reflect_index():
    assert [reflect_index(i, 4) for i in range(-3, 7)] == [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    assert [reflect_index(i, 1) for i in (-2, 0, 2)] == [0, 0, 0]
    assert [reflect_index(i, 2) for i in (-2, -1, 0, 1, 2, 3)] == [0, 1, 0, 1, 0, 1]


# ---------------------------------------------------------------------------- SynthDataset


def test_synth_dataset_items(tmp_path):
    photos = _photos(tmp_path / "photos")
    ds = SynthDataset(photos, length=4, frames=5, size=32, seed=7)
    item = ds[1]
    assert set(item) == {"blur", "sharp", "depth"}
    assert item["blur"].shape == (15, 32, 32) and item["sharp"].shape == (3, 32, 32)
    assert item["depth"].shape == (1, 32, 32)
    for v in item.values():
        assert v.dtype == torch.float32
    assert item["blur"].min() >= -1 and item["blur"].max() <= 1
    assert item["depth"].min() >= 0 and item["depth"].max() <= 1
    again = SynthDataset(photos, length=4, frames=5, size=32, seed=7)
    ds.set_epoch(3)  # no effect: items depend on (seed, i) only
    for k in item:
        assert torch.equal(item[k], again[1][k]) and torch.equal(item[k], ds[1][k])
    assert not torch.equal(ds[2]["blur"], item["blur"])
    with pytest.raises(IndexError):
        ds[4]


def test_synth_scene_cache_gives_identical_items(tmp_path):
    photos = _photos(tmp_path / "photos")
    cached = SynthDataset(photos, length=3, size=32, seed=7, cache=True)
    plain = SynthDataset(photos, length=3, size=32, seed=7)
    for _ in range(2):  # second pass is served from the cache
        for i in range(3):
            a, b = cached[i], plain[i]
            assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(cached._cache) == 3


def test_synth_dataset_matches_written_split(tmp_path):
    photos = _photos(tmp_path / "photos")
    ds = SynthDataset(photos, length=2, frames=1, size=24, seed=5, augment=False)
    write_split(tmp_path / "out", PhotoBank(photos), "train", 2, 24, 24, seed=5)
    disk = PairedFolderDataset(tmp_path / "out", crop=None, augment=False)
    for i in range(2):
        a, b = ds[i], disk[i]
        assert torch.equal(a["blur"], b["blur"]) and torch.equal(a["sharp"], b["sharp"])
        assert torch.allclose(a["depth"], b["depth"], atol=1 / 65535)


def test_synth_dataset_augment_is_shared(tmp_path):
    photos = _photos(tmp_path / "photos")
    plain = SynthDataset(photos, length=6, frames=1, size=24, seed=2, augment=False)
    aug = SynthDataset(photos, length=6, frames=1, size=24, seed=2, augment=True)
    changed = 0
    for i in range(6):
        p, a = plain[i], aug[i]
        options = list(zip(*(dihedral(p[k]) for k in ("blur", "sharp", "depth")), strict=True))
        target = (a["blur"], a["sharp"], a["depth"])
        matches = [
            n
            for n, opt in enumerate(options)
            if all(torch.equal(x, y) for x, y in zip(opt, target, strict=True))
        ]
        assert matches, f"item {i}: blur/sharp/depth were not transformed alike"
        changed += 0 not in matches
    assert changed >= 2


# ---------------------------------------------------------------------- PairedFolderDataset


@pytest.mark.parametrize("layout", ["gopro", "reds", "flat"])
def test_layouts(tmp_path, layout):
    root = make_tree(tmp_path / layout, layout)
    ds = PairedFolderDataset(root, frames=1, crop=16, augment=False)
    assert ds.layout == layout and len(ds) == 7
    item = ds[0]
    assert set(item) == {"blur", "sharp", "depth"}
    assert item["blur"].shape == (3, 16, 16) and item["depth"].shape == (1, 16, 16)
    assert item["blur"].min() >= -1 and item["blur"].max() <= 1
    assert 0 <= item["depth"].min() and item["depth"].max() <= 1
    # depth/ is read as value / 65535: here it is a copy of channel 0 on disk (BGR: blue)
    blue01 = (item["sharp"][2] + 1) / 2
    assert torch.allclose(item["depth"][0], blue01, atol=2e-4)
    full = PairedFolderDataset(root, crop=None, augment=False)[0]
    assert full["sharp"].shape == (3, 20, 24)


def test_five_frame_windows_reflect_at_ends(tmp_path):
    root = make_tree(tmp_path / "g", "gopro", seqs=(("a", 3), ("b", 4)))
    ds = PairedFolderDataset(root, frames=5, crop=None, augment=False)
    base_mean = float(_frame(0).mean()) / 255

    def frames_of(i):
        blur = (ds[i]["blur"] + 1) / 2
        means = [float(blur[3 * k : 3 * k + 3].mean()) - base_mean for k in range(5)]
        return [round(m * 255) for m in means]

    # sequence a (3 frames, values 0, 10, 20); sequence b (4 frames, 100..130): never mixed
    assert frames_of(0) == [20, 10, 0, 10, 20]
    assert frames_of(1) == [10, 0, 10, 20, 10]
    assert frames_of(2) == [0, 10, 20, 10, 0]
    assert frames_of(3) == [120, 110, 100, 110, 120]
    assert frames_of(6) == [110, 120, 130, 120, 110]
    sharp = (ds[6]["sharp"] + 1) / 2
    assert round((float(sharp.mean()) - base_mean) * 255) == 130
    assert ds[0]["blur"].shape == (15, 20, 24)


def test_augmentation_same_transform_and_noise(tmp_path):
    root = make_tree(tmp_path / "g", "gopro")
    ds = PairedFolderDataset(root, crop=16, augment=True, noise_sigma=0.0, seed=3)
    kinds = set()
    for i in range(len(ds)):
        item = ds[i]
        assert torch.equal(item["blur"], item["sharp"])  # blur == sharp on disk
        assert torch.allclose(item["depth"][0], (item["sharp"][2] + 1) / 2, atol=2e-4)
        kinds.add(item["sharp"][:, 0, :4].sum().item())
    assert len(kinds) > 1
    noisy = PairedFolderDataset(root, crop=16, augment=True, noise_sigma=0.01, seed=3)
    item = noisy[2]
    diff = (item["blur"] - item["sharp"]) / 2  # back to [0, 1] units
    assert 0.007 < float(diff.std()) < 0.013
    assert item["blur"].min() >= -1 and item["blur"].max() <= 1
    assert torch.equal(noisy[2]["blur"], item["blur"])  # a pure function of (seed, i, epoch)
    noisy.set_epoch(1)
    assert not torch.equal(noisy[2]["blur"], item["blur"])


def test_frame_cache_gives_the_same_items_and_reads_each_file_once(tmp_path, monkeypatch):
    from dgn_cli.data import datasets as ds_module

    root = make_tree(tmp_path / "g", "gopro")
    real = ds_module.read_rgb_raw
    reads = []
    monkeypatch.setattr(ds_module, "read_rgb_raw", lambda p: reads.append(p) or real(p))

    def two_epochs(ds):
        reads.clear()
        items = []
        for epoch in (0, 1):
            ds.set_epoch(epoch)
            items += [ds[i] for i in range(len(ds))]
        return items, list(reads)

    plain, plain_reads = two_epochs(PairedFolderDataset(root, frames=5, crop=16, seed=4))
    cached, cached_reads = two_epochs(
        PairedFolderDataset(root, frames=5, crop=16, seed=4, cache_frames=True)
    )
    for a, b in zip(plain, cached, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(set(cached_reads)) == sorted(cached_reads)  # each file decoded once
    assert set(cached_reads) == set(plain_reads) and len(plain_reads) > len(cached_reads)


def test_noise_is_automatic_and_never_doubled_on_rendered_splits(tmp_path):
    root = make_tree(tmp_path / "g", "gopro")
    plain = PairedFolderDataset(root, crop=16, augment=True, seed=3)  # e.g. GOPRO: paper noise
    diff = (plain[2]["blur"] - plain[2]["sharp"]) / 2
    assert 0.007 < float(diff.std()) < 0.013
    # A split written by `dgn data synth` already carries the renderer's noise.
    (root / "train" / "synth.json").write_text(json.dumps({"config": {"noise_sigma": 0.01}}))
    rendered = PairedFolderDataset(root, crop=16, augment=True, seed=3)
    assert rendered.noise_sigma == 0.0
    assert torch.equal(rendered[2]["blur"], rendered[2]["sharp"])


def test_extra_data_joins_train_splits_each_with_its_own_settings(tmp_path):
    """`dgn train --data A --extra-data B`: A's and B's train splits in one set (their sequence
    names may repeat), B's rendered-noise setting kept, validation on A's test split only."""
    from dgn_cli.train.config import RunOptions, TrainConfig
    from dgn_cli.train.datasets import build_datasets

    a = make_tree(tmp_path / "a", "gopro")  # 7 frames, no synth.json: the paper's noise added
    shutil.copytree(a / "train", a / "test")
    b = make_tree(tmp_path / "b", "gopro", seqs=(("a", 2), ("b", 1)))  # the same names
    (b / "train" / "synth.json").write_text(json.dumps({"config": {"noise_sigma": 0.01}}))
    cfg = TrainConfig(
        task="image", data=str(a), extra_data=[str(b)], crop=16, val_count=2, depth_model="exact"
    )
    train, val = build_datasets(cfg, RunOptions(out=str(tmp_path / "run")), None)
    assert len(train) == 7 + 3 and len(val) == 2
    noisy = [not torch.equal(train[i]["blur"], train[i]["sharp"]) for i in range(len(train))]
    assert noisy == [True] * 7 + [False] * 3  # A gets noise, B (already noisy) does not
    train.set_epoch(3)  # every part varies its crops per epoch
    assert [part.epoch for part in train.datasets] == [3, 3]
    with pytest.raises(InputError, match="not to 'synth'"):
        TrainConfig(data="synth", extra_data=(str(b),))
    with pytest.raises(InputError, match="no such folder"):
        build_datasets(
            TrainConfig(data=str(a), extra_data=(str(tmp_path / "nope"),), depth_model="exact"),
            RunOptions(out=str(tmp_path / "run")),
            None,
        )


def test_errors(tmp_path):
    with pytest.raises(InputError, match="no train/ folder"):
        PairedFolderDataset(tmp_path)
    root = make_tree(tmp_path / "nodepth", "gopro", depth=False)
    with pytest.raises(InputError, match="depth estimator"):
        PairedFolderDataset(root)
    assert "depth" not in PairedFolderDataset(root, crop=8, require_depth=False)[0]
    (root / "train" / "a" / "sharp" / "000001.png").unlink()
    with pytest.raises(InputError, match="000001.png: no matching frame"):
        PairedFolderDataset(root, require_depth=False)
    with pytest.raises(InputError, match="smaller than the 64px crop"):
        PairedFolderDataset(make_tree(tmp_path / "t", "flat"), crop=64)[0]


class CountingEstimator(nn.Module):
    """Depth = brightness x scale; counts how many frames it saw."""

    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return (x.mean(dim=1, keepdim=True) * self.scale).clamp(0, 1)


def test_depth_cache_computed_once_and_keyed_by_estimator(tmp_path):
    root = make_tree(tmp_path / "g", "gopro", depth=False)
    est = CountingEstimator()
    ds = PairedFolderDataset(root, crop=None, augment=False, depth_estimator=est)
    assert est.calls == 14 and ds.computed_depth_maps == 14  # 7 sharp + 7 blurred frames
    item = ds[4]
    assert set(item) == {"blur", "sharp", "depth", "depth_init"}
    assert torch.allclose(item["depth"], ((item["sharp"] + 1) / 2).mean(0, keepdim=True), atol=1e-4)
    # a second dataset with the same estimator reads the cache
    again = PairedFolderDataset(root, crop=8, depth_estimator=est)
    assert est.calls == 14 and again.computed_depth_maps == 0
    # other weights: another cache folder, computed afresh
    other = CountingEstimator(scale=0.5)
    ds2 = PairedFolderDataset(root, crop=None, augment=False, depth_estimator=other)
    assert other.calls == 14
    assert torch.allclose(ds2[4]["depth"], item["depth"] * 0.5, atol=1e-4)
    # with depth/ present only the initial depth is estimated; cache_dir is honoured
    root2 = make_tree(tmp_path / "d", "reds", depth=True)
    third = CountingEstimator()
    ds3 = PairedFolderDataset(root2, depth_estimator=third, cache_dir=tmp_path / "cache", crop=8)
    assert third.calls == 7 and "depth_init" in ds3[0]
    assert list((tmp_path / "cache").rglob("depth_init/*.png"))


def test_a_shared_depth_cache_refuses_another_datasets_maps(tmp_path):
    # two synthetic-style datasets whose sequences have the same names (000000, ...)
    a = make_tree(tmp_path / "a", "gopro", depth=False)
    b = make_tree(tmp_path / "b", "gopro", depth=False)
    cache = tmp_path / "cache"
    est = CountingEstimator()
    PairedFolderDataset(a, crop=8, depth_estimator=est, cache_dir=cache)
    with pytest.raises(OutputError, match="holds the maps of") as refused:
        PairedFolderDataset(b, crop=8, depth_estimator=est, cache_dir=cache)
    assert str((a / "train").resolve()) in str(refused.value)
    assert str((b / "train").resolve()) in str(refused.value)
    assert est.calls == 14  # nothing of b's was computed into a's cache, nothing served from it
    # the same dataset reached through a link still reads its own cache
    (tmp_path / "link").symlink_to(a)
    again = PairedFolderDataset(tmp_path / "link", crop=8, depth_estimator=est, cache_dir=cache)
    assert again.computed_depth_maps == 0
    # a cache filled before folders were claimed is adopted by the first dataset that uses it
    for marker in cache.rglob(CACHE_SOURCE_FILE):
        marker.unlink()
    PairedFolderDataset(b, crop=8, depth_estimator=est, cache_dir=cache)
    with pytest.raises(OutputError, match="pass another --depth-cache"):
        PairedFolderDataset(a, crop=8, depth_estimator=est, cache_dir=cache)


def test_make_loader_batches(tmp_path):
    root = make_tree(tmp_path / "g", "gopro")
    ds = PairedFolderDataset(root, crop=16)
    batch = next(iter(make_loader(ds, batch_size=2, num_workers=0)))
    assert batch["blur"].shape == (2, 3, 16, 16)
    order1 = [b["sharp"].sum().item() for b in make_loader(ds, 2, seed=1, num_workers=0)]
    order2 = [b["sharp"].sum().item() for b in make_loader(ds, 2, seed=1, num_workers=0)]
    assert order1 == order2
