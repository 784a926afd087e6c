"""Video windows are aligned onto their centre frame before the video DGN (dgn_cli.frame_align):
a panning camera must not double edges (bikes.mp4 frame 74 did before stretch 8)."""

from __future__ import annotations

import json

import cv2
import imageio.v3 as iio
import numpy as np
import torch
from typer.testing import CliRunner

from dgn_cli.cli import app
from dgn_cli.engine import Engine, EngineConfig
from dgn_cli.frame_align import MIN_RESPONSE, align_window, global_shift, grey, shift_frame
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


def panning_window(h=96, w=128, step=(7, -4), count=5) -> torch.Tensor:
    """(1, 3 * count, h, w): crops of one big texture, frame k moved by (k - centre) * step px,
    so every neighbour is the centre frame translated by whole px (no wrap-around)."""
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


def test_shift_frame_moves_whole_pixels_and_fills_from_the_centre():
    moving = torch.arange(20.0).reshape(1, 1, 4, 5)
    fill = torch.full_like(moving, -1.0)
    out = shift_frame(moving, fill, dx=2, dy=-1)  # out(x, y) = moving(x + 2, y - 1)
    assert out[0, 0, 1, 0] == moving[0, 0, 0, 2] and out[0, 0, 3, 2] == moving[0, 0, 2, 4]
    assert (out[0, 0, 0] == -1).all() and (out[0, 0, :, 3:] == -1).all()  # uncovered: the fill
    assert torch.equal(shift_frame(moving, fill, dx=5, dy=0), fill)  # nothing overlaps


def test_a_panning_window_becomes_a_still_one():
    window = panning_window(step=(7, -4))
    aligned, report = align_window(window, 5)
    assert aligned.shape == window.shape and aligned.dtype == window.dtype
    assert report.shifts == [(14, -8), (7, -4), (0, 0), (-7, 4), (-14, 8)]  # content moved
    assert report.replaced == [] and report.largest_shift > 16
    centre = window[:, 6:9]
    for k in range(5):  # every frame is now the centre frame: moved content + centre-filled strip
        assert torch.equal(aligned[:, 3 * k : 3 * k + 3], centre), k
    unmoved, still = align_window(centre.repeat(1, 5, 1, 1), 5)
    assert torch.equal(unmoved, centre.repeat(1, 5, 1, 1)) and still.largest_shift == 0


def test_a_neighbour_with_no_match_is_replaced_by_the_centre():
    window = panning_window(h=192, w=256, step=(3, 2))  # small frames give spurious peaks
    other = torch.from_numpy(texture(192, 256, seed=5)).permute(2, 0, 1)[None]
    window[:, 12:15] = other  # frame t+2: another view (a cut, a flash)
    aligned, report = align_window(window, 5)
    assert report.replaced == [4] and report.shifts[4] == (0, 0)
    assert torch.equal(aligned[:, 12:15], window[:, 6:9])
    far = panning_window(h=96, w=128, step=(20, 0))  # t +- 1: 16 % of the width; t +- 2: 31 %
    report = align_window(far, 5)[1]
    assert report.replaced == [0, 4] and report.shifts[1] == (20, 0)


def test_large_frames_are_matched_downscaled_and_the_shift_scaled_back():
    window = panning_window(h=600, w=1100, step=(18, 6), count=3)
    _, report = align_window(window, 3)  # matched at 512 px wide: ~0.47x
    assert report.shifts[0] == (18, 6) and report.shifts[2] == (-18, -6)


def test_the_video_engine_sees_the_aligned_window(tiny_config):
    torch.manual_seed(0)
    dgn = randomize_outputs(DGN(tiny_config(frames=5))).eval()  # output depends on every frame
    depth = DepthEstimator(make_tiny_depth_net(), "small")
    pan = panning_window(step=(6, 3))
    still = pan[:, 6:9].repeat(1, 5, 1, 1)
    d = torch.full((1, 1, 96, 128), 0.5)

    def run(frames, align):
        cfg = EngineConfig(device="cpu", precision="fp32", kind="video", align_frames=align)
        eng = Engine(cfg, dgn=dgn, depth_estimator=depth)
        return eng.restore(frames, d)[0], eng

    aligned, eng = run(pan, True)
    assert torch.allclose(aligned, run(still, True)[0], atol=1e-6)
    assert eng.last_run.alignment.shifts[0] == (12, 6) and eng.info()["align_frames"]
    raw, eng = run(pan, False)
    assert (raw - aligned).abs().max() > 1e-3 and eng.last_run.alignment is None


def test_deblur_video_reports_the_alignment(tiny_checkpoints, tmp_path):
    big = (texture(160, 260, seed=2) * 255).astype(np.uint8)
    frames = np.stack([big[16:112, 6 * t : 6 * t + 128] for t in range(12)])  # 6 px a frame
    src = tmp_path / "pan.mp4"
    iio.imwrite(src, frames, fps=12, codec="libx264", macro_block_size=1)
    runner = CliRunner()
    base = ["deblur-video", str(src), "--weights", str(tiny_checkpoints["identity-video"])]
    base += ["--depth-model", str(tiny_checkpoints["depth"]), "--device", "cpu", "--json"]
    on = runner.invoke(app, [*base, "-o", str(tmp_path / "a.mp4")])
    assert on.exit_code == 0, on.output
    doc = json.loads(on.stdout)
    assert doc["align_frames"] and doc["alignment"]["frames_shifted"] == 12
    assert 11 <= doc["alignment"]["largest_shift_px"] <= 13  # t +- 2: 12 px
    assert doc["alignment"]["neighbours_replaced"] == 0
    off = runner.invoke(app, [*base, "-o", str(tmp_path / "b.mp4"), "--no-align"])
    assert off.exit_code == 0, off.output
    doc = json.loads(off.stdout)
    assert doc["alignment"] is None and not doc["align_frames"]
