"""Training data where the blur is: the handheld camera, per-pixel blur-extent maps, split
statistics, blur-weighted crops; and the fast recipe's pieces (cosine schedule, Charbonnier,
FFT-L1, EMA, degraded depth)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dgn_cli.cli import app
from dgn_cli.data.datasets import PairedFolderDataset
from dgn_cli.data.depth_degrade import degrade_depth
from dgn_cli.data.synth import (
    PhotoBank,
    SynthConfig,
    camera_config,
    render_sequence,
    write_split,
)
from dgn_cli.data.synth_stats import split_stats
from dgn_cli.ema import EMA
from dgn_cli.errors import InputError
from dgn_cli.losses import charbonnier, fft_l1
from dgn_cli.metrics import laplacian_variance
from dgn_cli.train import TrainConfig, lr_at, recipe_config
from tests.test_data_synth import make_photos, make_pink_photos


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_pink_photos(tmp_path_factory.mktemp("pink"), size=(200, 150))


def test_extent_map_follows_inverse_depth_under_pure_translation(photos):
    # No rotation, no own motion: every point moves by (raw inverse depth) x (the path), so the
    # extent map is an increasing function of depth; the nearest layer sweeps extent_px.
    cfg = SynthConfig(
        extent_px=(10.0, 10.0), rotation_px=(0.0, 0.0), moving_prob=0.0, noise_sigma=0.0,
        ground_prob=0.0, scale_with_size=False,
    )  # fmt: skip
    out = render_sequence(PhotoBank(photos), 5, 96, 64, cfg=cfg)
    extent, depth = out["extent"][0], out["depth"][0]
    assert extent.shape == (64, 96) and extent.dtype == np.float32
    near = depth > 0.99
    assert abs(float(np.median(extent[near])) - 10.0) < 1.5  # slanted planes: +-10 %
    far = depth < 0.05
    assert float(np.median(extent[far])) < float(np.median(extent[near]))
    corr = np.corrcoef(extent.ravel(), depth.ravel())[0, 1]
    assert corr > 0.9


def test_handheld_camera_blurs_the_whole_frame_and_lateral_does_not(photos):
    bank = PhotoBank(photos)
    under_2px = {}
    for name in ("lateral", "handheld"):
        cfg = camera_config(name, noise_sigma=0.0, scale_with_size=False)
        maps = [render_sequence(bank, s, 160, 90, cfg=cfg)["extent"][0] for s in range(4)]
        under_2px[name] = float((np.concatenate([m.ravel() for m in maps]) < 2).mean())
    assert under_2px["handheld"] < 0.15 < under_2px["lateral"]
    with pytest.raises(InputError, match="unknown camera"):
        camera_config("tripod")


def test_data_synth_stats_and_extent_files(tmp_path, photos):
    result = CliRunner().invoke(
        app,
        ["data", "synth", str(tmp_path / "s"), "--photos", str(photos), "--split", "test",
         "--count", "3", "--size", "96x64", "--stats"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "blurry input vs sharp (3 frames)" in result.stdout
    assert "per-pixel blur extent (px)" in result.stdout
    meta = json.loads((tmp_path / "s/test/synth.json").read_text())
    stats = meta["stats"]
    assert stats["frames"] == 3 and set(stats["identity_psnr"]) == {"all", "near", "middle", "far"}
    assert stats["extent_px"]["p50"] > 0
    assert (tmp_path / "s/test/000002/extent/000000.png").is_file()
    assert split_stats(tmp_path / "s", "test")["extent_px"] == stats["extent_px"]


def test_continuous_blur_has_no_ghost_copies_of_the_same_scene(photos):
    # 24 px over 7 sub-frames: copies 4 px apart. With --max-step 1 the exposure is sampled
    # every <= 1 px: the same scene, sharp frame and depth, a smoother (ghost-free) blur.
    bank = PhotoBank(photos)
    base = dict(
        extent_px=(24.0, 24.0), subframes=(7,), rotation_px=(0.0, 0.0), moving_prob=0.0,
        noise_sigma=0.0, scale_with_size=False,
    )  # fmt: skip
    ghost = render_sequence(bank, 3, 160, 96, cfg=SynthConfig(**base))
    smooth = render_sequence(bank, 3, 160, 96, cfg=SynthConfig(**base, subframe_step_px=1.0))
    assert ghost["subframes"] == 7 and smooth["subframes"] == 35  # 5 x 7: <= 24/6/5 px apart
    assert np.array_equal(ghost["sharp"], smooth["sharp"])
    assert np.array_equal(ghost["depth"], smooth["depth"])
    assert abs(ghost["blur"].astype(float).mean() - smooth["blur"].astype(float).mean()) < 1.0
    near = ghost["depth"][0] > 0.5  # where the path is long: the ghost copies' hard edges
    assert laplacian_variance(ghost["blur"][0], near) > 1.5 * laplacian_variance(
        smooth["blur"][0], near
    )
    # the extent maps follow the denser sampling (the same path, sampled more finely)
    assert np.median(smooth["extent"]) >= np.median(ghost["extent"])


def test_a_split_rendered_before_max_step_existed_resumes(tmp_path, photos):
    out = tmp_path / "s"
    args = ["data", "synth", str(out), "--photos", str(photos), "--split", "test",
            "--count", "1", "--size", "48x32", "--quiet"]  # fmt: skip
    assert CliRunner().invoke(app, args).exit_code == 0
    meta_path = out / "test" / "synth.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["subframe_step_px"]  # as an older dgn wrote it
    meta_path.write_text(json.dumps(meta))
    result = CliRunner().invoke(app, [*args[:-1], "--count", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (out / "test/000001/blur/000000.png").is_file()
    refused = CliRunner().invoke(app, [*args, "--max-step", "1"])
    assert refused.exit_code == 1 and "config differ" in refused.output


def test_crops_are_drawn_towards_blur(tmp_path):
    # One frame whose right half is blurred 30 px and left half sharp (extent map by hand).
    import cv2

    root = tmp_path / "d"
    bank = PhotoBank(make_photos(tmp_path / "p"))
    write_split(root, bank, "train", 1, 128, 32, seed=0)
    extent = np.zeros((32, 128), np.uint16)
    extent[:, 64:] = 3000  # 30 px x 100
    cv2.imwrite(str(root / "train/000000/extent/000000.png"), extent)

    def right_share(bias):
        ds = PairedFolderDataset(root, "train", crop=32, augment=False, seed=0, crop_bias=bias)
        ds_items = []
        for epoch in range(60):
            ds.set_epoch(epoch)
            ds_items.append(ds[0]["blur"])
        full = PairedFolderDataset(root, "train", crop=None, augment=False)[0]["blur"]
        right = full[..., 64:]
        count = 0
        for crop in ds_items:
            # where the crop came from: compare with every window of the full frame
            xs = [x for x in range(0, 97) if torch.equal(full[..., x : x + 32], crop)]
            count += xs[0] >= 48
        del right
        return count / len(ds_items)

    assert right_share(2.0) > 0.75 > right_share(0.0)


def test_cosine_schedule_warms_up_then_decays():
    c = TrainConfig(steps=100, lr=1e-3, lr_final=1e-6, schedule="cosine", warmup=0.1)
    values = [lr_at(s, c) for s in range(100)]
    assert values[0] == pytest.approx(1e-4) and values[9] == pytest.approx(1e-3)
    assert all(a <= b for a, b in zip(values[:10], values[1:10], strict=False))
    assert all(a >= b for a, b in zip(values[10:], values[11:], strict=False))
    assert values[-1] == pytest.approx(1e-6)
    fast = recipe_config("fast", steps=10)
    assert fast.loss == "charbonnier" and fast.schedule == "cosine" and fast.recipe == "fast"
    assert recipe_config("paper").lr == 1e-4
    with pytest.raises(InputError):
        recipe_config("slow")


def test_charbonnier_and_fft_losses():
    a = torch.zeros(1, 3, 8, 8)
    b = torch.full((1, 3, 8, 8), 0.5)
    assert charbonnier(a, b, 1e-3).item() == pytest.approx(0.5, rel=1e-4)
    assert charbonnier(a, a, 1e-3).item() == pytest.approx(1e-3)
    assert fft_l1(a, a).item() == 0.0 and fft_l1(a, b).item() > 0


def test_ema_averages_and_round_trips(tiny_config):
    from dgn_cli.models import DGN

    model = DGN(tiny_config())
    ema = EMA(model, 0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)  # first update: decay min(0.5, 1/10) = 0.1 -> 90 % of the new weights
    p_live = next(model.parameters())
    p_ema = next(ema.shadow.parameters())
    assert torch.allclose(p_ema, p_live - 0.1, atol=1e-6)
    other = EMA(model, 0.5)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1 and torch.equal(next(other.shadow.parameters()), p_ema)


def test_ema_without_warmup_keeps_a_trained_start(tiny_config):
    from dgn_cli.models import DGN

    model = DGN(tiny_config())
    ema = EMA(model, 0.9, warmup=False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)  # full decay from the first update: 10 % of the new weights, not 90 %
    p_live, p_ema = next(model.parameters()), next(ema.shadow.parameters())
    assert torch.allclose(p_ema, p_live - 0.9, atol=1e-6)


def test_some_degraded_maps_are_flat_like_an_estimator_that_sees_nothing():
    depth = torch.linspace(0, 1, 32).expand(400, 1, 16, 32).contiguous()
    out = degrade_depth(depth, torch.Generator().manual_seed(0))
    flat = out.flatten(1).std(1) == 0
    assert 0.08 < flat.float().mean() < 0.25  # FLAT_PROB = 0.15
    levels = out[flat].flatten(1)[:, 0]
    assert levels.min() < 0.3 and levels.max() > 0.7  # at random levels, not one constant
    assert (out[~flat].flatten(1).std(1) > 0).all()  # the rest keep their structure


def test_degraded_depth_is_plausible_and_seeded():
    depth = torch.linspace(0, 1, 64).expand(3, 1, 48, 64).contiguous()
    a = degrade_depth(depth, torch.Generator().manual_seed(1))
    b = degrade_depth(depth, torch.Generator().manual_seed(1))
    c = degrade_depth(depth, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == depth.shape and a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, depth)
    # still a depth map of the same scene: positively correlated with the truth
    for i in range(3):
        x, y = a[i].flatten(), depth[i].flatten()
        assert torch.corrcoef(torch.stack([x, y]))[0, 1] > 0.3 or x.std() < 1e-6
