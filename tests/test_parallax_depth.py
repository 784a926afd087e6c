"""A video window's initial depth from motion parallax (dgn_cli.parallax_depth): what moves
farther when the camera translates is nearer, whatever the camera's pan and roll."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import torch
from typer.testing import CliRunner

from dgn_cli.cli import app
from dgn_cli.engine import Engine, EngineConfig
from dgn_cli.models import DGN
from dgn_cli.models.depth import DepthEstimator
from dgn_cli.parallax_depth import MIN_PARALLAX_PX, fit_parallax, window_parallax_depth
from tests.conftest import make_tiny_depth_net
from tests.test_frame_align import panning_window, texture

H, W = 192, 256
SQUARE = (slice(64, 128), slice(96, 160))  # rows, columns of the near square at t = 0


def parallax_frames(count=5, step=(6.0, 2.0), d_far=0.25) -> np.ndarray:
    """(count, H, W, 3) float32 [0, 1]: a camera translating by `step` px per frame (for
    inverse depth 1) over a backdrop at inverse depth d_far and a square at 1, so the square
    moves 1 / d_far times as far as the backdrop between frames."""
    mid, pad = count // 2, 40
    back, near = texture(H + 2 * pad, W + 2 * pad, seed=5), texture(64, 64, seed=6)
    frames = []
    for k in range(count):
        sx, sy = (k - mid) * step[0], (k - mid) * step[1]
        bx, by = round(pad - sx * d_far), round(pad - sy * d_far)  # content moves by +d * t
        img = back[by : by + H, bx : bx + W].copy()
        y0, x0 = 64 + round(sy), 96 + round(sx)
        img[y0 : y0 + 64, x0 : x0 + 64] = near
        frames.append(img)
    return np.stack(frames)


def as_window(frames: np.ndarray) -> torch.Tensor:
    return torch.cat([torch.from_numpy(f).permute(2, 0, 1)[None] for f in frames], dim=1)


def test_the_fit_recovers_inverse_depth_under_pan_and_roll():
    h, w = 90, 160
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    d = 0.3 + 0.7 * ((xs > 40) & (xs < 90) & (ys > 20) & (ys < 60))  # a near box on a far wall
    d += 0.002 * ys  # a slanted floor-like gradient
    t, pan, omega = np.array([4.0, -1.5]), np.array([0.8, 0.6]), 0.004
    jx, jy = -(ys - (h - 1) / 2), xs - (w - 1) / 2
    flow = np.stack([d * t[0] + pan[0] + omega * jx, d * t[1] + pan[1] + omega * jy], axis=-1)
    cue = fit_parallax(flow.astype(np.float32), scale=0.5)
    assert np.corrcoef(cue.along.ravel(), d.ravel())[0, 1] > 0.999
    # d * |t| up to a constant: the box (rows 30-49) stands 0.7 - 0.002 * 37.5 above the wall
    # (rows 70-84, lower on the floor-like gradient), times |t| = 4.27 px
    box = cue.along[30:50, 50:80].mean() - cue.along[70:85, 100:150].mean()
    assert abs(box - (0.7 - 0.002 * 37.5) * np.hypot(*t)) < 0.05
    assert 5.5 < cue.spread < 6.5  # 2 x (matching scale 0.5) the depth-dependent range in px


def test_the_near_square_comes_out_near():
    depth = window_parallax_depth(as_window(parallax_frames()), 5)
    assert depth is not None and depth.shape == (1, 1, H, W)
    assert 0.0 <= float(depth.min()) and float(depth.max()) <= 1.0
    inside = depth[0, 0, 72:120, 104:152].mean()  # the square, away from its smeared edges
    backdrop = torch.cat([depth[0, 0, :48].flatten(), depth[0, 0, 150:].flatten()]).mean()
    assert inside > 0.7 and backdrop < 0.15, (inside, backdrop)


def test_no_parallax_no_depth():
    still = as_window(parallax_frames(step=(0.0, 0.0)))
    assert window_parallax_depth(still, 5) is None
    pan = panning_window(step=(7, -4))  # everything moves alike: no depth in the motion
    assert window_parallax_depth(pan, 5) is None
    assert window_parallax_depth(still[:, :3], 1) is None  # one frame
    assert MIN_PARALLAX_PX > 0


def test_the_video_engine_takes_d_b_from_parallax_or_the_estimator(tiny_config):
    torch.manual_seed(0)
    dgn = DGN(tiny_config(frames=5)).eval()
    estimator = DepthEstimator(make_tiny_depth_net(), "small")

    def engine(video_depth):
        cfg = EngineConfig(device="cpu", precision="fp32", kind="video", video_depth=video_depth)
        return Engine(cfg, dgn=dgn, depth_estimator=estimator)

    window = as_window(parallax_frames())
    eng = engine("parallax")
    d_b = eng.initial_depth(window)
    assert eng.last_depth_source == "parallax" and eng.info()["video_depth"] == "parallax"
    assert torch.equal(d_b, window_parallax_depth(window, 5))
    image, _ = eng.restore(window)  # D_b from the window when none is given
    assert image.shape == (1, 3, H, W) and eng.last_depth_source == "parallax"
    still = as_window(parallax_frames(step=(0.0, 0.0)))
    assert torch.equal(eng.initial_depth(still), eng.estimate_depth(still[:, 6:9]))
    assert eng.last_depth_source == "estimator"
    default = engine("estimator")
    assert torch.equal(default.initial_depth(window), default.estimate_depth(window[:, 6:9]))
    image_dgn = Engine(
        EngineConfig(device="cpu", precision="fp32", video_depth="parallax"),
        dgn=DGN(tiny_config()).eval(),
        depth_estimator=estimator,
    )
    assert image_dgn.video_depth == "estimator"  # one frame has no parallax to read


def test_auto_gives_the_weights_the_d_b_they_trained_on(tiny_config, tmp_path):
    from dgn_cli import checkpoints

    dgn = DGN(tiny_config(frames=5)).eval()
    estimator = tmp_path / "depth.safetensors"
    checkpoints.save_depth_net(make_tiny_depth_net(), estimator)

    def engine(train_config: str | None, video_depth="auto") -> Engine:
        path = tmp_path / f"v{len(list(tmp_path.iterdir()))}.safetensors"
        meta = {"train_config": train_config} if train_config is not None else None
        checkpoints.save_dgn(dgn, path, metadata=meta)
        cfg = EngineConfig(device="cpu", precision="fp32", kind="video", weights=str(path),
                           depth_model=str(estimator), video_depth=video_depth)  # fmt: skip
        return Engine(cfg)

    assert engine(json.dumps({"depth_model": "parallax"})).video_depth == "parallax"
    assert engine(json.dumps({"depth_model": "degraded"})).video_depth == "estimator"
    assert engine(None).video_depth == "estimator"  # no recipe recorded
    assert engine("not json{").video_depth == "estimator"  # only a default: never an error
    forced = engine(json.dumps({"depth_model": "parallax"}), video_depth="estimator")
    assert forced.video_depth == "estimator"  # an explicit choice wins


def test_parallax_and_alignment_share_one_flow_pass_per_window(tiny_config, monkeypatch):
    from dgn_cli import frame_align

    calls = []
    measure = frame_align.window_flows
    monkeypatch.setattr(frame_align, "window_flows", lambda *a: calls.append(1) or measure(*a))
    cfg = EngineConfig(
        device="cpu", precision="fp32", kind="video", video_depth="parallax", align="all"
    )
    eng = Engine(cfg, dgn=DGN(tiny_config(frames=5)).eval(), depth_estimator=None)
    window = as_window(parallax_frames())
    image, _ = eng.restore(window)  # D_b from parallax, then the alignment: one flow pass
    assert len(calls) == 1 and eng.last_depth_source == "parallax"
    assert len(eng.last_run.alignment.warped) == 4  # the flows were used for the warp too
    eng.restore(window, eng.initial_depth(window))  # the same, unchanged window: no new pass
    assert len(calls) == 1
    window.mul_(0.5)  # written in place: its flows are measured again, not taken from before
    eng.initial_depth(window)
    assert len(calls) == 2
    eng.initial_depth(window.clone())  # another tensor
    assert len(calls) == 3


def test_deblur_video_with_parallax_depth_reports_its_sources(tiny_checkpoints, tmp_path):
    moving = parallax_frames(count=10, step=(3.0, 1.0))  # the camera translates throughout
    still = np.repeat(moving[4:5], 6, axis=0)  # then stops: no parallax, the estimator's depth
    src = tmp_path / "clip.mp4"
    frames = (np.concatenate([moving, still]) * 255).round().astype(np.uint8)
    iio.imwrite(src, frames, fps=10, codec="libx264", macro_block_size=1)
    cmd = ["deblur-video", str(src), "-o", str(tmp_path / "out.mp4"), "--device", "cpu"]
    cmd += ["--weights", str(tiny_checkpoints["identity-video"]), "--json"]
    cmd += ["--depth-model", str(tiny_checkpoints["depth"]), "--scene-threshold", "0"]
    result = CliRunner().invoke(app, [*cmd, "--video-depth", "parallax"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    sources = doc["depth_sources"]
    assert doc["video_depth"] == "parallax" and sources["parallax"] + sources["estimator"] == 16
    assert sources["parallax"] >= 6 and sources["estimator"] >= 2, sources
    assert doc["frames"] == 16 and (tmp_path / "out.mp4").stat().st_size > 0
    result = CliRunner().invoke(app, [*cmd, "--overwrite"])
    assert json.loads(result.stdout)["depth_sources"] is None
