"""The DGN network: shapes, gradients, variants, sizes, checkpoint round trip."""

import pytest
import torch

from dgn_cli.checkpoints import load_dgn, save_dgn
from dgn_cli.models import DGN, DGNConfig, parameter_counts
from dgn_cli.models.blocks import SFTLayer


def _inputs(frames=1, h=37, w=53, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 3 * frames, h, w, generator=g) * 2 - 1
    depth = torch.rand(2, 1, h, w, generator=g)
    return image, depth


@pytest.mark.parametrize("variant", ["dgn", "baseline", "concat"])
@pytest.mark.parametrize("size", [(37, 53), (4, 4), (1, 3), (64, 32)])
def test_output_shapes_any_size(tiny_config, variant, size):
    model = DGN(tiny_config(variant=variant)).eval()
    image, depth = _inputs(h=size[0], w=size[1])
    out = model(image, depth)
    assert out.image.shape == (2, 3, *size)
    if variant == "baseline":
        assert out.depth is None
    else:
        assert out.depth.shape == (2, 1, *size)


def test_video_model_takes_five_frames_and_restores_the_centre(tiny_config):
    model = DGN(tiny_config(frames=5)).eval()
    frames, depth = _inputs(frames=5)
    assert model.deblur.net.conv1[0].in_channels == 15
    out = model(frames, depth)
    assert out.image.shape == (2, 3, 37, 53)
    # Residual learning is anchored on the centre frame (t), channels 6..8.
    torch.nn.init.zeros_(model.deblur.net.conv24.weight)
    torch.nn.init.zeros_(model.deblur.net.conv24.bias)
    assert torch.equal(model(frames, depth).image, frames[:, 6:9])


def test_residual_learning_identity_when_branch_outputs_zero(tiny_config):
    model = DGN(tiny_config()).eval()  # Conv24 starts at zero: the branches output tanh(0)
    image, depth = _inputs()
    out = model(image, depth)
    assert torch.equal(out.image, image)  # I = B + G_B, G_B = tanh(0) = 0
    assert torch.equal(out.depth, depth)  # D_r = D_b + G_D


def test_outputs_depend_on_depth_only_when_the_variant_uses_it(tiny_config):
    image, depth = _inputs()
    for variant, expect_change in [("dgn", True), ("concat", True), ("baseline", False)]:
        torch.manual_seed(0)
        model = DGN(tiny_config(variant=variant)).eval()
        # SFT starts as the identity; perturb it so depth actually modulates features.
        for p in model.parameters():
            p.data.add_(torch.randn_like(p) * 0.05)
        a = model(image, depth).image
        b = model(image, 1 - depth).image
        assert (not torch.allclose(a, b)) == expect_change, variant


@pytest.mark.parametrize("variant", ["dgn", "baseline", "concat"])
def test_every_parameter_gets_a_finite_gradient(tiny_config, variant):
    torch.manual_seed(0)
    model = DGN(tiny_config(variant=variant, frames=5 if variant == "dgn" else 1))
    # Conv24 starts at zero (identity model), which blocks gradients to everything before it
    # until the first step; a small perturbation stands in for that step.
    for p in model.parameters():
        p.data.add_(torch.randn_like(p) * 0.01)
    frames, depth = _inputs(frames=model.config.frames, h=16, w=20)
    out = model(frames, depth)
    loss = out.image.square().mean() + (out.depth.square().mean() if out.depth is not None else 0)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_sft_is_gamma_times_features_plus_beta():
    torch.manual_seed(0)
    sft = SFTLayer(guide_chs=1, feat_chs=4, cond_chs=3)
    feats, guide = torch.randn(1, 4, 8, 8), torch.rand(1, 1, 8, 8)
    # Near the identity at initialisation (small gamma/beta weights, so the condition convs
    # get a gradient from the first step).
    assert (sft(feats, guide) - feats).abs().max() < 0.1 * feats.abs().max()
    for p in sft.parameters():
        p.data.normal_(0, 0.3)
    phi = sft.condition(guide)
    expected = sft.to_gamma(phi) * feats + sft.to_beta(phi)
    assert torch.allclose(sft(feats, guide), expected)


def test_safetensors_round_trip_reproduces_outputs(tiny_config, tmp_path):
    torch.manual_seed(1)
    model = DGN(tiny_config(variant="concat", frames=5)).eval()
    path = save_dgn(model, tmp_path / "m.safetensors", metadata={"note": "test"})
    loaded = load_dgn(path)
    assert loaded.config == model.config
    frames, depth = _inputs(frames=5)
    with torch.no_grad():
        a, b = model(frames, depth), loaded(frames, depth)
    assert torch.equal(a.image, b.image) and torch.equal(a.depth, b.depth)


def test_default_size_matches_the_paper():
    dgn = parameter_counts(DGN(DGNConfig()))
    baseline = parameter_counts(DGN(DGNConfig(variant="baseline")))
    assert dgn["total"] == dgn["refinement"] + dgn["deblurring"]
    # Paper: fewer parameters than DeepDeblur (11.7 M) and DeblurGAN (11.6 M).
    assert dgn["total"] < 11.6e6
    assert 2.0e6 < dgn["deblurring"] < 3.0e6  # widths 32/64/128, 3x3: ~2.6 M per branch
    # The no-depth baseline is size-matched to DGN (paper Sec. V-B).
    assert abs(baseline["total"] - dgn["total"]) / dgn["total"] < 0.05
    assert baseline["refinement"] == 0


def test_paper_layer_names_are_recognisable():
    names = dict(DGN(DGNConfig()).deblur.net.named_children())
    for layer in [
        "conv1",
        "sft",
        "res2_4",
        "conv5",
        "res6_8",
        "conv9",
        "res10_15",
        "upconv16",
        "res17_19",
        "upconv20",
        "res21_23",
        "conv24",
    ]:
        assert layer in names
    assert len(names["res10_15"]) == 6 and len(names["res2_4"]) == 3


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="variant"):
        DGNConfig(variant="nope")
    with pytest.raises(ValueError, match="odd"):
        DGNConfig(frames=4)
