"""Strength and depth-aware masks (dgn_cli.blend) through the library, the API and the CLI:
the kept layer comes back exactly, strength 0 is the input, strength is monotone."""

import json

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dgn_cli import blend
from dgn_cli.api import Deblurrer
from dgn_cli.cli import app
from dgn_cli.engine import Engine, EngineConfig
from dgn_cli.models import DGN
from dgn_cli.models.depth import DepthEstimator
from dgn_cli.models.dgn import randomize_outputs

runner = CliRunner()
H, W = 48, 64


class FixedDepth(torch.nn.Module):
    """A depth 'estimator' that knows the scene: returns the given map whatever the image."""

    def __init__(self, depth: torch.Tensor):
        super().__init__()
        self.register_buffer("depth", depth)

    def forward(self, image):
        return self.depth.expand(image.shape[0], -1, -1, -1)


def scene():
    """A sharp near layer (a textured box, depth 0.9) over a defocused far layer (depth 0.1)."""
    rng = np.random.default_rng(3)
    far = cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3)).astype(np.uint8), (0, 0), 3)
    image = far.copy()
    near = np.zeros((H, W), bool)
    near[12:36, 16:40] = True
    image[near] = rng.integers(0, 256, (int(near.sum()), 3)).astype(np.uint8)
    depth = torch.full((1, 1, H, W), 0.1)
    depth[0, 0, torch.from_numpy(near)] = 0.9
    return image, near, depth


def deblurrer_for(depth: torch.Tensor, tiny_config) -> Deblurrer:
    """A Deblurrer on a tiny DGN whose image branch changes its input and whose depth branch
    is the identity (refined depth = the scene's depth), on the CPU."""
    torch.manual_seed(0)
    dgn = DGN(tiny_config())
    randomize_outputs(dgn)
    torch.nn.init.zeros_(dgn.refinement.net.conv24.weight)
    torch.nn.init.zeros_(dgn.refinement.net.conv24.bias)
    d = Deblurrer.__new__(Deblurrer)
    est = DepthEstimator(FixedDepth(depth), "small")
    d.engine = Engine(EngineConfig(device="cpu", precision="fp32", tile=0), dgn=dgn,
                      depth_estimator=est)  # fmt: skip
    return d


def test_keep_background_keeps_the_far_layer_and_changes_the_near_one(tiny_config):
    image, near, depth = scene()
    d = deblurrer_for(depth, tiny_config)
    full = d.deblur(image).astype(int)
    kept = d.deblur(image, keep_background=True).astype(int)
    # far from the edge (more than the feather reach), the far layer is the input exactly
    far_inside = cv2.erode((~near).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert np.abs(kept[far_inside] - image[far_inside]).max() <= 1
    assert np.abs(full[far_inside] - image[far_inside]).max() > 10  # the network did act
    near_inside = cv2.erode(near.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert np.array_equal(kept[near_inside], full[near_inside])  # deblurred as without mask
    # the other way round
    fg = d.deblur(image, keep_foreground=0.5).astype(int)
    assert np.abs(fg[near_inside] - image[near_inside]).max() <= 1
    assert np.array_equal(fg[far_inside], full[far_inside])
    # the mask is soft: a ramp across the edge, no jump from 0 to 1 between neighbours
    mask = d.mask(image, keep_background=True)
    assert mask[near_inside].min() == 1 and mask[far_inside].max() == 0
    assert np.abs(np.diff(mask, axis=1)).max() < 0.5


def test_strength_zero_is_the_input_and_strength_is_monotone(tiny_config):
    image, _, depth = scene()
    d = deblurrer_for(depth, tiny_config)
    assert np.array_equal(d.deblur(image, strength=0.0), image)
    for dtype in (np.uint16, np.float32):
        im = image.astype(dtype) * (257 if dtype == np.uint16 else 1 / 255)
        assert np.array_equal(d.deblur(im.astype(dtype), strength=0.0), im.astype(dtype))
    x = torch.rand(1, 3, 16, 16)
    y = torch.rand(1, 3, 16, 16)
    previous = torch.zeros(1, 3, 16, 16)
    lin_x = blend.srgb_to_linear(x)
    for s in np.linspace(0, 1, 11):
        out = blend.blend(x, y, float(s))
        dist = (blend.srgb_to_linear(out) - lin_x).abs()
        assert (dist >= previous - 1e-6).all()
        previous = dist
    assert torch.equal(blend.blend(x, y, 1.0), y) and torch.equal(blend.blend(x, y, 0.0), x)


def test_blend_is_in_linear_light_and_masks_are_exact_at_the_ends():
    black, white = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    half = blend.blend(black, white, 0.5)
    assert abs(float(half.mean()) - 0.7354) < 1e-3  # linear 0.5 encoded as sRGB, not 0.5
    x = torch.rand(1, 3, 8, 8)
    assert torch.allclose(blend.linear_to_srgb(blend.srgb_to_linear(x)), x, atol=1e-6)
    w = torch.zeros(1, 1, 8, 8)
    w[..., :4] = 1
    out = blend.blend(x, 1 - x, w)
    assert torch.equal(out[..., :4], 1 - x[..., :4]) and torch.equal(out[..., 4:], x[..., 4:])
    two = torch.cat([torch.full((1, 1, 8, 8), 0.2), torch.full((1, 1, 8, 8), 0.8)], -1)
    assert 0.2 < blend.otsu_threshold(two) <= 0.8
    assert blend.otsu_threshold(torch.full((1, 1, 4, 4), 0.3)) == 0.5
    with pytest.raises(ValueError):
        blend.Control(strength=1.5)


def test_temporal_depth_steadies_the_estimator_part():
    frames = [torch.full((1, 1, 4, 4), v) for v in (0.2, 0.4, 0.3, 0.5, 0.1)]
    refined = frames[2] + 0.05
    steady = blend.temporal_depth(refined, frames[2], frames)
    assert torch.allclose(steady, torch.full((1, 1, 4, 4), 0.35))
    assert blend.temporal_depth(refined, frames[2], frames[2:3]) is refined


def test_cli_image_strength_mask_and_four_panel_compare(tmp_path, tiny_checkpoints):
    image, _, _ = scene()
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), image[:, :, ::-1])
    a = tiny_checkpoints.args("image")
    r = runner.invoke(app, ["deblur-image", str(src), "-o", str(tmp_path / "s0.png"),
                            "--strength", "0", *a])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert np.array_equal(cv2.imread(str(tmp_path / "s0.png")), cv2.imread(str(src)))
    r = runner.invoke(app, ["deblur-image", str(src), "-o", str(tmp_path / "kb.png"),
                            "--keep-background", "--threshold", "0.5", "--compare", "--json",
                            *a])  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)["files"][0]
    assert doc["control"]["keep"] == "background" and 0 <= doc["mask_mean"] <= 1
    cmp = cv2.imread(doc["compare"])
    assert cmp.shape[:2] == (H, 4 * W + 3 * 8)
    r = runner.invoke(app, ["deblur-image", str(src), "-o", str(tmp_path / "x.png"),
                            "--keep-background", "--only-far", *a])  # fmt: skip
    assert r.exit_code != 0 and "exclude each other" in r.output
    r = runner.invoke(app, ["deblur-image", str(src), "-o", str(tmp_path / "x.png"),
                            "--threshold", "0.3", *a])  # fmt: skip
    assert r.exit_code != 0 and "--keep-background" in r.output


def test_cli_video_mask_per_frame_and_three_panel_compare(tmp_path, tiny_checkpoints):
    from test_cli_video import frames_of, make_clip

    from dgn_cli.video.probe import probe

    src = make_clip(tmp_path / "clip.mp4", frames=12, audio=False)
    out = tmp_path / "out.mp4"
    r = runner.invoke(app, ["deblur-video", str(src), "-o", str(out), "--keep-background",
                            "--compare", "-q", *tiny_checkpoints.args("video")])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(frames_of(out)) == 12
    cmp = probe(tmp_path / "out.compare.mp4")
    assert (cmp.width, cmp.height) == (3 * 64 + 2 * 8, 48)
    r = runner.invoke(app, ["deblur-video", str(src), "-o", str(tmp_path / "s0.mp4"),
                            "--strength", "0", "--crf", "0", "-q",
                            *tiny_checkpoints.args("video")])  # fmt: skip
    assert r.exit_code == 0, r.output
    plain = runner.invoke(app, ["deblur-video", str(src), "-o", str(tmp_path / "p.mp4"),
                                "--crf", "0", "-q", *tiny_checkpoints.args("video")])  # fmt: skip
    assert plain.exit_code == 0
    src_frames = frames_of(src).astype(int)
    d0 = np.abs(frames_of(tmp_path / "s0.mp4").astype(int) - src_frames).mean()
    d1 = np.abs(frames_of(tmp_path / "p.mp4").astype(int) - src_frames).mean()
    assert d0 < d1 / 3  # strength 0: the input again (up to the lossless yuv420p round trip)
