"""--self-ensemble: flips/transposes averaged per tile, equivariant at 8, through the CLI."""

import json

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dgn_cli import ensemble
from dgn_cli.cli import app
from dgn_cli.engine import Engine, EngineConfig
from dgn_cli.errors import DgnError
from dgn_cli.models import DGN
from dgn_cli.models.depth import DepthEstimator
from dgn_cli.models.dgn import randomize_outputs

runner = CliRunner()


@pytest.fixture
def models(tiny_config, tiny_depth_net):
    torch.manual_seed(0)
    dgn = randomize_outputs(DGN(tiny_config())).eval()  # not the identity: output != input
    return dgn, DepthEstimator(tiny_depth_net(), "small", "tiny")


def make(models, **cfg):
    dgn, depth = models
    return Engine(
        EngineConfig(device="cpu", precision="fp32", **cfg), dgn=dgn, depth_estimator=depth
    )


def inputs(h=48, w=64, seed=0):
    """Mid-grey images and depths, so no pass's output reaches the [0, 1] clamp (the engine
    clamps the mean; a mean of clamped passes would differ where one pass overshoots)."""
    g = torch.Generator().manual_seed(seed)
    image = 0.35 + 0.3 * torch.rand(1, 3, h, w, generator=g)
    return image, 0.35 + 0.3 * torch.rand(1, 1, h, w, generator=g)


@pytest.mark.parametrize("k", range(8))
def test_every_transform_is_undone_by_its_inverse(k):
    x = torch.arange(2 * 3 * 5, dtype=torch.float32).view(1, 2, 3, 5)
    t = ensemble.forward_transform(x, k)
    assert torch.equal(ensemble.inverse_transform(t, k), x)
    assert t.shape[-2:] == ((5, 3) if k >= 4 else (3, 5))


def test_the_eight_transforms_are_eight_different_views():
    x = torch.arange(9, dtype=torch.float32).view(1, 1, 3, 3)
    seen = {tuple(ensemble.forward_transform(x, k).flatten().tolist()) for k in range(8)}
    assert len(seen) == 8


@pytest.mark.parametrize("n", [2, 4, 8])
def test_ensemble_is_the_mean_of_the_mapped_back_passes(models, n):
    x, d = inputs()
    eng = make(models, self_ensemble=n, tile=0)
    got, got_depth = eng.restore(x, d)
    plain = make(models, tile=0)
    passes = [
        plain.restore(ensemble.forward_transform(x, k), ensemble.forward_transform(d, k))
        for k in range(n)
    ]
    want = torch.stack([ensemble.inverse_transform(p[0], k) for k, p in enumerate(passes)]).mean(0)
    want_depth = torch.stack([ensemble.inverse_transform(p[1], k) for k, p in enumerate(passes)])
    assert 0 < want.min() and want.max() < 1 and 0 < want_depth.min() and want_depth.max() < 1
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_depth, want_depth.mean(0), atol=1e-5, rtol=0)
    single, _ = plain.restore(x, d)
    assert (got - single).abs().max() > 1e-4  # the passes really differ: it is not one pass


def test_eight_passes_make_the_result_equivariant_to_flips_and_transposes(models):
    x, d = inputs(40, 56)
    eng = make(models, self_ensemble=8, tile=0)
    out, _ = eng.restore(x, d)
    for k in (1, 2, 4, 7):
        flipped, _ = eng.restore(ensemble.forward_transform(x, k), ensemble.forward_transform(d, k))
        torch.testing.assert_close(flipped, ensemble.forward_transform(out, k), atol=1e-5, rtol=0)
    plain = make(models, tile=0)
    a, _ = plain.restore(x.flip(-1), d.flip(-1))
    b, _ = plain.restore(x, d)
    assert (a - b.flip(-1)).abs().max() > 1e-4  # a single pass is not equivariant


def test_ensemble_works_with_tiles_without_seams(models):
    x, d = inputs(200, 264)
    whole, _ = make(models, self_ensemble=4, tile=0).restore(x, d)
    tiled_engine = make(models, self_ensemble=4, tile=128, tile_overlap=32)
    tiled, _ = tiled_engine.restore(x, d)
    assert tiled_engine.last_run.tiles > 1
    assert (tiled - whole).abs().max() < 2 / 255


@pytest.mark.parametrize("n", [0, 3, 16])
def test_bad_ensemble_size_is_refused(n):
    with pytest.raises(DgnError, match="--self-ensemble must be one of 1, 2, 4, 8"):
        EngineConfig(self_ensemble=n)


def test_cli_self_ensemble_writes_the_averaged_result(tmp_path, tiny_checkpoints):
    src = np.random.default_rng(0).integers(0, 256, (40, 56, 3)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "in.png"), src)
    args = ["deblur-image", str(tmp_path / "in.png"), *tiny_checkpoints.args("image")]
    one = runner.invoke(app, [*args, "-o", str(tmp_path / "one.png"), "--json"])
    eight = runner.invoke(
        app, [*args, "-o", str(tmp_path / "eight.png"), "--self-ensemble", "8", "--json"]
    )
    assert one.exit_code == 0 and eight.exit_code == 0, eight.output
    assert json.loads(eight.stdout)["self_ensemble"] == 8
    assert json.loads(one.stdout)["self_ensemble"] == 1
    a = cv2.imread(str(tmp_path / "one.png"))
    b = cv2.imread(str(tmp_path / "eight.png"))
    assert a.shape == b.shape == src.shape and not np.array_equal(a, b)
    assert "self-ensemble of 8 passes" in eight.stderr


def test_cli_bad_self_ensemble_is_one_line_exit_1(tmp_path, tiny_checkpoints):
    cv2.imwrite(str(tmp_path / "in.png"), np.zeros((16, 16, 3), np.uint8))
    r = runner.invoke(
        app,
        ["deblur-image", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"),
         *tiny_checkpoints.args("image"), "--self-ensemble", "3"],
    )  # fmt: skip
    assert r.exit_code == 1
    assert "--self-ensemble must be one of 1, 2, 4, 8, got 3" in r.stderr
    assert not (tmp_path / "o.png").exists()


def test_python_api_takes_self_ensemble(tiny_checkpoints):
    from dgn_cli.api import Deblurrer

    kw = dict(
        weights=str(tiny_checkpoints["image"]),
        depth_model=str(tiny_checkpoints["depth"]),
        device="cpu",
        precision="fp32",
    )
    photo = np.random.default_rng(1).integers(0, 256, (32, 40, 3)).astype(np.uint8)
    four = Deblurrer(**kw, self_ensemble=4)
    assert four.engine.info()["self_ensemble"] == 4
    out4, out1 = four.deblur(photo), Deblurrer(**kw).deblur(photo)
    assert out4.shape == photo.shape and out4.dtype == np.uint8
    assert not np.array_equal(out4, out1)
