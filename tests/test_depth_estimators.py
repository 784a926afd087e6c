"""DepthEstimator adapters: each public network's sizes and conversion into the convention
(normalised inverse depth in [0, 1], 1 = nearest, at the input's resolution)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgn_cli.models.depth import ADAPTERS, DepthEstimator
from dgn_cli.models.depth.estimator import depth_anything_size, megadepth_size


class Recorder(nn.Module):
    """Stands in for a network: records its input, returns a ramp that grows downwards
    (row index), shaped as the real network's output."""

    def __init__(self, out: str):
        super().__init__()
        self.out = out
        self.scale = nn.Parameter(torch.ones(()))
        self.seen: torch.Tensor | None = None

    def forward(self, x):
        self.seen = x
        b, _, h, w = x.shape
        ramp = torch.linspace(0, 1, h).view(1, h, 1).expand(b, h, w) * self.scale
        return ramp if self.out == "bhw" else ramp.unsqueeze(1)


def test_sizes():
    assert depth_anything_size(720, 1280) == (518, 924)
    assert depth_anything_size(518, 518) == (518, 518)
    h, w = depth_anything_size(1000, 333)
    assert w >= 518 and h % 14 == 0 and w % 14 == 0
    assert megadepth_size(384, 512) == (384, 512)
    assert megadepth_size(3000, 4000) == (384, 512)
    h, w = megadepth_size(1080, 1920)
    assert h % 16 == 0 and w % 16 == 0 and abs(w / h - 16 / 9) < 0.05


def test_depth_anything_adapter_normalises_and_keeps_disparity_orientation():
    net = Recorder("bhw")
    estimator = DepthEstimator(net, kind="depth-anything-v2")
    image = torch.full((2, 3, 36, 48), 0.5)
    depth = estimator(image)
    assert depth.shape == (2, 1, 36, 48)
    assert net.seen.shape[-2:] == (518, 686)  # shorter side 518, multiples of 14
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(net.seen, ((0.5 - mean) / std).expand_as(net.seen), atol=1e-5)
    # disparity grows downwards, so the bottom is nearest (1) and the top farthest (0)
    assert depth.min() >= 0 and depth.max() <= 1
    assert depth[:, :, -1].mean() > 0.95 and depth[:, :, 0].mean() < 0.05


def test_megadepth_adapter_inverts_log_depth():
    net = Recorder("b1hw")  # log depth grows downwards: the bottom is farthest
    estimator = DepthEstimator(net, kind="megadepth")
    image = torch.rand(1, 3, 30, 40)
    depth = estimator(image)
    assert depth.shape == (1, 1, 30, 40)
    assert net.seen.shape[-2:] == (384, 512)
    assert net.seen.min() >= 0 and net.seen.max() <= 1  # no mean/std for MegaDepth
    assert depth[:, :, 0].mean() > 0.95 and depth[:, :, -1].mean() < 0.05


def test_every_adapter_is_listed():
    assert {"small", "depth-anything-v2", "megadepth"} <= set(ADAPTERS)
    with pytest.raises(ValueError, match="unknown depth estimator kind"):
        DepthEstimator(nn.Identity(), kind="nope")


def test_small_net_input_scale_sees_a_downscaled_frame_and_answers_at_full_size(tiny_depth_net):
    from dgn_cli.models.depth import SmallDepthConfig

    torch.manual_seed(0)
    net = tiny_depth_net(input_scale=0.25).eval()
    image = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        depth = net(image)
        # What it computes: the same weights on the 1/4-size frame, upsampled back.
        small = torch.nn.functional.interpolate(image, size=(9, 13), mode="area")
        full_res = tiny_depth_net().eval()
        full_res.load_state_dict(net.state_dict())
        expected = torch.nn.functional.interpolate(
            full_res(small), size=(37, 53), mode="bilinear", align_corners=False
        )
    assert depth.shape == (2, 1, 37, 53) and 0 <= depth.min() and depth.max() <= 1
    assert torch.allclose(depth, expected)
    # Stored in the config, so a saved net keeps its scale; older configs mean 1.0.
    cfg = SmallDepthConfig.from_json(net.config.to_json())
    assert cfg.input_scale == 0.25
    assert SmallDepthConfig.from_json('{"widths": [4, 8], "slope": 0.2}').input_scale == 1.0
    with pytest.raises(ValueError, match="input_scale"):
        SmallDepthConfig(input_scale=0.0)


def test_a_relative_small_net_is_min_max_normalised_per_frame(tiny_depth_net):
    from dgn_cli.models.depth import SmallDepthConfig

    torch.manual_seed(0)
    net = tiny_depth_net(relative=True).eval()
    torch.nn.init.normal_(net.head.weight, std=0.5)  # a trained head: the answer varies
    image = torch.rand(2, 3, 40, 48)
    with torch.no_grad():
        raw = net(image)
        depth = DepthEstimator(net, "small")(image)
    assert raw.amax() - raw.amin() < 0.9  # the net's own answer does not span [0, 1]...
    for d, r in zip(depth, raw, strict=True):  # ...its reading does, per frame, in order
        assert d.amin() == 0 and d.amax() == 1
        assert (d.flatten()[torch.argsort(r.flatten())].diff() >= 0).all()
    # Absolute nets are read as they are; older configs are absolute.
    plain = tiny_depth_net().eval()
    plain.load_state_dict(net.state_dict())
    with torch.no_grad():
        assert torch.equal(DepthEstimator(plain, "small")(image), plain(image).clamp(0, 1))
    assert not SmallDepthConfig.from_json('{"widths": [4, 8], "slope": 0.2}').relative


def test_a_relative_small_net_with_a_flat_answer_reads_flat_not_amplified_noise(tiny_depth_net):
    from dgn_cli.models.depth import SmallDepthConfig
    from dgn_cli.models.depth.estimator import MIN_RELATIVE_SPREAD, small_depth

    torch.manual_seed(0)
    net = tiny_depth_net(relative=True).eval()
    image = torch.rand(2, 3, 40, 48)
    for std in (0.0, 1e-4):  # untrained (zero head: 0.5 everywhere), then nearly flat
        torch.nn.init.normal_(net.head.weight, std=std)
        with torch.no_grad():
            raw = net(image)
            depth = DepthEstimator(net, "small")(image)
        assert float(raw.amax() - raw.amin()) < MIN_RELATIVE_SPREAD
        assert torch.equal(depth, torch.full_like(depth, 0.5))  # not 0 (all far), not noise

    # One frame of a batch flat, the other not: each frame is read on its own.
    class Answers(torch.nn.Module):
        config = SmallDepthConfig(relative=True)

        def forward(self, image):
            ramp = torch.linspace(0.2, 0.7, image.shape[-1]).expand(image.shape[-2], -1)
            return torch.stack([ramp, 0.3 + 1e-3 * ramp])[:, None]

    depth = small_depth(Answers(), image)
    assert depth[0].amin() == 0 and depth[0].amax() == 1
    assert torch.equal(depth[1], torch.full_like(depth[1], 0.5))


def test_untrained_small_net_says_one_half_everywhere():
    """The head starts at zero: the first steps begin at the middle of the sigmoid, not at a
    random logit that the optimiser can push into saturation (the collapse seen at lr 1e-3)."""
    from dgn_cli.models.depth import SmallDepthConfig, SmallDepthNet

    torch.manual_seed(0)
    net = SmallDepthNet(SmallDepthConfig(widths=(4, 8))).eval()
    with torch.no_grad():
        depth = net(torch.rand(2, 3, 24, 40))
    assert depth.shape == (2, 1, 24, 40)
    assert torch.equal(depth, torch.full_like(depth, 0.5))
