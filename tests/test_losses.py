"""Losses (Eq. 4-7), the VGG-19 conv3_3 feature network and the depth estimator's loss."""

import pytest
import torch

from dgn_cli.losses import DepthLoss, DGNLoss, LossWeights, gradient_matching
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
