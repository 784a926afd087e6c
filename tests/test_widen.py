"""Widening trained weights (`dgn train --init NARROW --widen --widths WIDER`): the wide net
computes what the narrow one did, its new channels are alive, and a narrowing is refused."""

import pytest
import torch
from test_train import cfg, data, run
from tiny import TINY

from dgn_cli.checkpoints import load_dgn, save_dgn
from dgn_cli.errors import CheckpointError, InputError
from dgn_cli.models import DGN
from dgn_cli.models.dgn import randomize_outputs
from dgn_cli.models.widen import widen_state_dict
from dgn_cli.train import train
from dgn_cli.weight_health import zero_fraction

WIDE = {"widths": (6, 12, 16), "baseline_extra_mid_chs": 12}


def _trained_like(tiny_config, **overrides) -> DGN:
    """A tiny DGN whose every weight (Conv24 included) is random, as a trained one's would be."""
    torch.manual_seed(0)
    return randomize_outputs(DGN(tiny_config(**overrides))).eval()


def _inputs(frames: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 3 * frames, 20, 28, generator=g) * 2 - 1
    depth = torch.rand(2, 1, 20, 28, generator=g)
    return image, depth


@pytest.mark.parametrize("variant,frames", [("dgn", 1), ("dgn", 5), ("baseline", 1), ("concat", 1)])
def test_a_widened_dgn_computes_what_the_narrow_one_did(tiny_config, variant, frames):
    narrow = _trained_like(tiny_config, variant=variant, frames=frames)
    wide = DGN(tiny_config(variant=variant, frames=frames, **WIDE)).eval()
    fresh = {k: v.clone() for k, v in wide.state_dict().items()}
    wide.load_state_dict(widen_state_dict(narrow.state_dict(), wide))
    image, depth = _inputs(frames)
    with torch.no_grad():
        before, after = narrow(image, depth), wide(image, depth)
    centre = image[:, 3 * (frames // 2) : 3 * (frames // 2) + 3]
    change = (before.image - centre).abs().mean()
    assert change > 0.05  # the narrow net does change its input...
    assert (after.image - before.image).abs().max() < 1e-3 * change * 20  # ...the wide one alike
    if before.depth is not None:
        assert (after.depth - before.depth).abs().max() < 1e-2
    # The trained kernels sit in the corner; the new output channels keep their fresh values.
    key = "deblur.net.res2_4.0.conv1.weight"
    old, new = narrow.state_dict()[key], wide.state_dict()[key]
    assert torch.equal(new[: old.shape[0], : old.shape[1]], old)
    assert torch.equal(new[old.shape[0] :], fresh[key][old.shape[0] :])
    # Nothing new is dead: only Conv24's new input columns start at zero (its fresh init).
    assert zero_fraction(wide) < 0.05


def test_a_widened_dgn_gets_a_gradient_in_its_new_channels(tiny_config):
    narrow = _trained_like(tiny_config)
    wide = DGN(tiny_config(**WIDE))
    wide.load_state_dict(widen_state_dict(narrow.state_dict(), wide))
    image, depth = _inputs(1)
    wide(image, depth).image.square().mean().backward()
    conv = wide.deblur.net.res2_4[0].conv2
    old_out, old_in = narrow.deblur.net.res2_4[0].conv2.weight.shape[:2]
    assert conv.weight.grad[:old_out, old_in:].abs().sum() > 0  # old channels learn to listen
    up = wide.deblur.net.upconv16[0]  # transposed conv: weight (in, out, k, k)
    assert up.weight.grad[:, 8:].abs().sum() > 0


def test_widening_refuses_narrower_or_other_shapes(tiny_config):
    wide = _trained_like(tiny_config, **WIDE)
    narrow = DGN(tiny_config())
    with pytest.raises(ValueError, match="does not fit"):
        widen_state_dict(wide.state_dict(), narrow)
    other_kernel = DGN(tiny_config(io_kernel_size=3, **WIDE))
    with pytest.raises(ValueError, match="conv1.0.weight.*does not fit"):
        widen_state_dict(_trained_like(tiny_config).state_dict(), other_kernel)


def test_dgn_train_widens_init_weights_only_when_asked(tmp_path, tiny_config):
    start = tmp_path / "narrow.safetensors"
    narrow = _trained_like(tiny_config)
    save_dgn(narrow, start)
    wide_overrides = {k: v for k, v in {**TINY, **WIDE}.items() if k != "widths"}
    # Without --widen the wider model refuses the narrow weights and says what would work.
    refused = cfg(steps=1, widths=WIDE["widths"], model_overrides=wide_overrides, init=str(start))
    with pytest.raises(CheckpointError, match="--widen"):
        train(refused, run(tmp_path, "refused"), datasets=data(refused))
    # With it, a run at lr 0 exports the narrow net's outputs at the new widths.
    c = cfg(
        steps=1,
        lr=0.0,
        lr_final=0.0,
        weight_decay=0.0,
        widths=WIDE["widths"],
        model_overrides=wide_overrides,
        init=str(start),
        widen=True,
    )
    train(c, run(tmp_path, "wide", export="wide", export_dir=tmp_path / "w"), datasets=data(c))
    wide = load_dgn(tmp_path / "w" / "wide.safetensors").float().eval()
    assert wide.config.widths == WIDE["widths"]
    image, depth = _inputs(1)
    with torch.no_grad():
        assert torch.allclose(wide(image, depth).image, narrow(image, depth).image, atol=2e-3)
    with pytest.raises(InputError, match="needs --init"):
        cfg(widen=True)
    with pytest.raises(InputError, match="depth estimator"):
        cfg(task="depth", widen=True, init=str(start))
