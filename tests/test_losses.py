"""Losses (Eq. 4-7), the VGG-19 conv3_3 feature network and the depth estimator's loss."""

import pytest
import torch

from dgn_cli.losses import (
    INVARIANT_ANCHOR,
    MAX_ALIGN_SCALE,
    DepthLoss,
    DGNLoss,
    LossWeights,
    align_scale_shift,
    gradient_matching,
)
from dgn_cli.models.vgg import VGG19Conv33, vgg19_conv3_3_state

# torchvision's vgg19().features conv indices up to conv3_3
TV_CONVS = (0, 2, 5, 7, 10, 12, 14)


def test_vgg_keys_follow_torchvision_and_a_full_state_dict_loads():
    vgg = VGG19Conv33()
    expected = {f"features.{i}.{p}" for i in TV_CONVS for p in ("weight", "bias")}
    assert set(vgg.state_dict()) == expected
    # A full torchvision-layout VGG-19 (16 convs + classifier), as timm/torchvision ship it.
    full = {k: torch.randn_like(v) for k, v in vgg.state_dict().items()}
    full.update(
        {"features.16.weight": torch.zeros(256, 256, 3, 3), "features.16.bias": torch.zeros(256)}
    )
    full.update({"classifier.0.weight": torch.zeros(4, 4), "head.fc.bias": torch.zeros(4)})
    vgg.load_state_dict(vgg19_conv3_3_state(full), strict=True)
    assert torch.equal(vgg.features[14].weight, full["features.14.weight"])
    out = vgg(torch.rand(1, 3, 16, 16) * 2 - 1)
    assert out.shape == (1, 256, 4, 4)
    assert out.min() < 0  # before conv3_3's ReLU (the documented choice)
    assert VGG19Conv33(after_relu=True)(torch.rand(1, 3, 8, 8)).min() >= 0


def test_vgg_is_frozen_and_stays_in_eval():
    vgg = VGG19Conv33()
    vgg.train()
    assert not vgg.training
    assert not any(p.requires_grad for p in vgg.parameters())


def test_dgn_loss_terms_and_weights():
    torch.manual_seed(0)
    image = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_(True)
    sharp = torch.rand(2, 3, 16, 16) * 2 - 1
    depth = torch.rand(2, 1, 16, 16)
    target = torch.rand(2, 1, 16, 16)
    loss_fn = DGNLoss(LossWeights(1.0, 0.01, 1.0), VGG19Conv33())
    total, terms = loss_fn(image, sharp, depth, target)
    assert set(terms) == {"content", "perceptual", "depth"}
    assert terms["content"].item() == pytest.approx(((image - sharp) ** 2).mean().item(), rel=1e-6)
    assert terms["depth"].item() == pytest.approx(((depth - target) ** 2).mean().item(), rel=1e-6)
    expected = terms["content"] + 0.01 * terms["perceptual"] + terms["depth"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    total.backward()
    assert image.grad is not None and torch.isfinite(image.grad).all()


def test_dgn_loss_without_perceptual_or_depth():
    loss_fn = DGNLoss(LossWeights(1.0, 0.0, 1.0))
    x = torch.zeros(1, 3, 8, 8)
    total, terms = loss_fn(x, x + 0.5)
    assert set(terms) == {"content"}
    assert total.item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="VGG"):
        DGNLoss(LossWeights(perceptual=0.01))


def test_gradient_matching_ignores_offsets_and_sees_edges():
    target = torch.zeros(1, 1, 16, 16)
    target[..., 8:] = 1.0
    assert gradient_matching(target + 0.3, target).item() == pytest.approx(0.0, abs=1e-7)
    smeared = torch.nn.functional.avg_pool2d(target, 5, 1, 2, count_include_pad=False)
    assert gradient_matching(smeared, target).item() > 0.05
    total, terms = DepthLoss(0.5)(smeared, target)
    assert set(terms) == {"depth", "gradient"}
    assert total.item() == pytest.approx((terms["depth"] + 0.5 * terms["gradient"]).item())


def test_invariant_depth_loss_ignores_each_crops_level_and_range():
    target = torch.rand(2, 1, 16, 16)
    # The same shape at another level and range per sample: what a crop of a frame-normalised
    # depth can honestly say. The absolute loss punishes it; the invariant one does not.
    pred = target * torch.tensor([0.3, 0.6]).view(2, 1, 1, 1) + torch.tensor([0.5, 0.1]).view(
        2, 1, 1, 1
    )
    assert torch.allclose(align_scale_shift(pred, target), target, atol=1e-5)
    total, terms = DepthLoss(0.5, invariant=True)(pred, target)
    assert terms["depth"].item() < 1e-10 and terms["gradient"].item() < 1e-5
    assert total.item() == pytest.approx(INVARIANT_ANCHOR * terms["anchor"].item(), rel=1e-4)
    assert DepthLoss(0.5)(pred, target)[0].item() > 50 * total.item()
    # Upside-down depth is not aligned away (scale >= 0): it scores as a constant would.
    _, terms = DepthLoss(0.5, invariant=True)(1 - target, target)
    per_sample_var = target.var(dim=(1, 2, 3), correction=0).mean().item()
    assert terms["depth"].item() == pytest.approx(per_sample_var, rel=1e-4)


def test_invariant_depth_loss_has_a_gradient_at_a_flat_start():
    """The depth net's head starts at zero (0.5 everywhere): the aligned term alone gives no
    gradient there; the anchor does."""
    pred = torch.full((1, 1, 8, 8), 0.5, requires_grad=True)
    target = torch.linspace(0, 1, 64).view(1, 1, 8, 8)
    DepthLoss(0.5, invariant=True)(pred, target)[0].backward()
    assert pred.grad.abs().sum() > 0


def test_invariant_depth_loss_gradient_stays_bounded_near_a_flat_prediction():
    """Through cov / var the alignment's gradient grew as 1 / var: a nearly flat answer got
    kicks that saturated the net's sigmoid. The scale is capped and held fixed in the step."""
    target = torch.linspace(0, 1, 64).view(1, 1, 8, 8)
    for spread in (1e-6, 1e-3, 1e-1):
        pred = (0.5 + spread * torch.randn(1, 1, 8, 8)).requires_grad_(True)
        DepthLoss(0.5, invariant=True)(pred, target)[0].backward()
        assert torch.isfinite(pred.grad).all() and pred.grad.abs().max() < MAX_ALIGN_SCALE
