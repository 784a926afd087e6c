"""Video windows are aligned onto their centre frame before the video DGN (dgn_cli.frame_align):
a panning camera must not double edges (bikes.mp4 frame 74 did before stretch 8)."""

from __future__ import annotations

import json

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dgn_cli.cli import app
from dgn_cli.engine import Engine, EngineConfig
from dgn_cli.frame_align import MIN_RESPONSE, TRAINED_MOTION_PX, align_window, global_shift, grey
from dgn_cli.models import DGN
from dgn_cli.models.depth import DepthEstimator
from dgn_cli.models.dgn import randomize_outputs
from tests.conftest import make_tiny_depth_net


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(h, w, 3) float32 [0, 1]: smoothed noise, detail at several scales (phase correlation
    needs structure; so does a deblurring net)."""
    rng = np.random.default_rng(seed)
    img = rng.random((h, w, 3)).astype(np.float32)
    return 0.5 * cv2.GaussianBlur(img, (0, 0), 2.0) + 0.5 * cv2.GaussianBlur(img, (0, 0), 0.7)


def panning_window(h=192, w=256, step=(7, -4), count=5) -> torch.Tensor:
    """(1, 3 * count, h, w): crops of one big texture, frame k moved by (k - centre) * step px,
    so every neighbour is the centre frame translated by whole px (no wrap-around). Frames
    under ~192 px leave the flow's coarsest level too small for motions of ~15 % of the frame
    (real video frames are larger)."""
    mid, parts = count // 2, []
    pad = mid * max(map(abs, step))
    big = texture(h + 2 * pad, w + 2 * pad)
    for k in range(count):
        dx, dy = (k - mid) * step[0], (k - mid) * step[1]
        crop = big[pad + dy : pad + dy + h, pad + dx : pad + dx + w]
        parts.append(torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None])
    return torch.cat(parts, dim=1)


def test_global_shift_says_where_the_content_went():
    ref = grey(texture(96, 128))
    moved = np.roll(ref, shift=(3, -5), axis=(0, 1))  # content 3 px down, 5 px left
    dx, dy, response = global_shift(ref, moved)
    assert (round(dx), round(dy)) == (-5, 3) and response > 0.3
    unrelated = grey(texture(96, 128, seed=1))
    assert global_shift(ref, unrelated)[2] < MIN_RESPONSE


def interior(x: torch.Tensor, margin: int = 24) -> torch.Tensor:
    return x[..., margin:-margin, margin:-margin]


def test_a_panning_window_becomes_a_still_one():
    window = panning_window(step=(7, -4))
    aligned, report = align_window(window, 5, "all")
    assert aligned.shape == window.shape and aligned.dtype == window.dtype
    assert report.replaced == [] and 15 < report.largest_motion < 17  # t +- 2: 16.1 px
    assert report.motion_px[2] == 0.0 and 7.5 < report.motion_px[1] < 8.6  # 8.06 px
    centre = window[:, 6:9]
    for k in (0, 1, 3, 4):
        before = (interior(window[:, 3 * k : 3 * k + 3]) - interior(centre)).abs().mean()
        after = (interior(aligned[:, 3 * k : 3 * k + 3]) - interior(centre)).abs().mean()
        assert before > 0.05 and after < 0.01, (k, before, after)
    still = centre.repeat(1, 5, 1, 1)
    unmoved, report = align_window(still, 5, "all")
    assert torch.equal(unmoved, still) and report.largest_motion == 0.0


def test_two_motions_in_one_window_are_both_aligned():
    # A square moving right over a background moving left (a camera following a car):
    # one global shift could align only one of them; the flow aligns both.
    h, w = 192, 256
    bg, fg = texture(h, w + 40, seed=3), texture(64, 64, seed=4)
    frames = []
    for k in (-1, 0, 1):
        img = bg[:, 20 + 8 * k : 20 + 8 * k + w].copy()  # background content moves left
        x0 = 96 + 8 * k  # the square moves right
        img[64:128, x0 : x0 + 64] = fg
        frames.append(torch.from_numpy(img).permute(2, 0, 1)[None])
    window = torch.cat(frames, dim=1)
    aligned, report = align_window(window, 3, "all")
    centre = window[:, 3:6]
    square = (slice(None), slice(None), slice(76, 116), slice(108, 148))  # inside the square
    background = (slice(None), slice(None), slice(8, 48), slice(24, 232))
    for k in (0, 2):
        got = aligned[:, 3 * k : 3 * k + 3]
        for region in (square, background):
            before = (window[:, 3 * k : 3 * k + 3][region] - centre[region]).abs().mean()
            after = (got[region] - centre[region]).abs().mean()
            assert before > 0.05 and after < 0.25 * before, (k, region, before, after)


def test_a_neighbour_with_no_match_is_replaced_by_the_centre():
    window = panning_window(h=192, w=256, step=(3, 2))
    other = torch.from_numpy(texture(192, 256, seed=5)).permute(2, 0, 1)[None]
    window[:, 12:15] = other  # frame t+2: another view (a cut, a flash)
    aligned, report = align_window(window, 5, "all")
    assert report.replaced == [4] and report.trusted[4] < 0.25 < report.trusted[3]
    assert torch.equal(aligned[:, 12:15], window[:, 6:9])


def test_large_frames_are_matched_downscaled_and_the_flow_scaled_back():
    window = panning_window(h=600, w=1100, step=(18, 6), count=3)  # matched at 640 px wide
    aligned, report = align_window(window, 3, "all")
    assert 18 < report.motion_px[0] < 20  # 18.97 px at full resolution
    diff = (interior(aligned[:, :3], 64) - interior(window[:, 3:6], 64)).abs().mean()
    assert diff < 0.015


def test_auto_aligns_only_motion_beyond_what_the_model_was_trained_on():
    limit = TRAINED_MOTION_PX * 256 / 1280  # px per frame of distance at 256 px wide: 6
    slow = panning_window(step=(3, 2))  # 3.6 px a frame: inside the trained range
    out, report = align_window(slow, 5, "auto")
    assert torch.equal(out, slow) and report.warped == [] and report.motion_px[1] > 3
    fast = panning_window(step=(7, -4))  # 8.1 px a frame: beyond it
    out, report = align_window(fast, 5, "auto")
    assert report.warped == [0, 1, 3, 4] and report.motion_px[1] > limit
    assert torch.equal(out, align_window(fast, 5, "all")[0])
    with pytest.raises(ValueError, match="auto, all, off"):
        align_window(fast, 5, "sometimes")


def test_the_video_engine_sees_the_aligned_window(tiny_config):
    torch.manual_seed(0)
    dgn = randomize_outputs(DGN(tiny_config(frames=5))).eval()  # output depends on every frame
    depth = DepthEstimator(make_tiny_depth_net(), "small")
    pan = panning_window(step=(6, 3))
    still = pan[:, 6:9].repeat(1, 5, 1, 1)
    d = torch.full((1, 1, 192, 256), 0.5)

    def run(frames, align):
        cfg = EngineConfig(device="cpu", precision="fp32", kind="video", align=align)
        eng = Engine(cfg, dgn=dgn, depth_estimator=depth)
        return eng.restore(frames, d)[0], eng

    aligned, eng = run(pan, "all")
    still_out = run(still, "all")[0]
    raw, raw_eng = run(pan, "off")
    # aligned, the panning window gives (nearly) what the still window gives; raw, it does not
    err_aligned = (interior(aligned) - interior(still_out)).abs().mean()
    err_raw = (interior(raw) - interior(still_out)).abs().mean()
    assert err_aligned < 0.2 * err_raw, (err_aligned, err_raw)
    assert 13 < eng.last_run.alignment.motion_px[0] < 14 and eng.info()["align"] == "all"  # 13.4
    assert raw_eng.last_run.alignment is None


def _pan_clip(path, px_per_frame: int):
    big = (texture(224, 256 + 12 * px_per_frame, seed=2) * 255).astype(np.uint8)
    frames = np.stack([big[16:208, px_per_frame * t : px_per_frame * t + 256] for t in range(12)])
    iio.imwrite(path, frames, fps=12, codec="libx264", macro_block_size=1)
    return path


def test_deblur_video_aligns_fast_motion_and_reports_it(tiny_checkpoints, tmp_path):
    runner = CliRunner()
    outputs = iter(range(100))

    def run(src, *extra):
        cmd = ["deblur-video", str(src), "-o", str(tmp_path / f"o{next(outputs)}.mp4")]
        cmd += ["--weights", str(tiny_checkpoints["identity-video"]), "--depth-model"]
        cmd += [str(tiny_checkpoints["depth"]), "--device", "cpu", "--json", *extra]
        result = runner.invoke(app, cmd)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    fast = _pan_clip(tmp_path / "fast.mp4", 12)  # 12 px a frame at 256 px wide: past 6
    doc = run(fast)
    al = doc["alignment"]
    assert doc["align"] == "auto" and al["frames_with_motion"] == 12 and al["frames_aligned"] == 12
    assert 11 <= al["largest_motion_px"] <= 26  # t +- 1: 12 px, t +- 2: 24 px
    assert al["neighbours_replaced"] == 0 and 0.4 < al["trusted_fraction"] <= 1
    slow = _pan_clip(tmp_path / "slow.mp4", 2)  # inside the trained range: left as it is
    al = run(slow)["alignment"]
    assert al["frames_with_motion"] == 12 and al["frames_aligned"] == 0
    assert run(slow, "--align", "all")["alignment"]["frames_aligned"] == 12
    doc = run(fast, "--align", "off")
    assert doc["alignment"] is None and doc["align"] == "off"
