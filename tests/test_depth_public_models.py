"""Depth Anything V2 Small and the MegaDepth hourglass: exact key layouts of the released
checkpoints, and the deterministic fingerprints measured on the reference implementations
(facts in tests/fixtures/reference; the fill rule is implemented below)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from dgn_cli.models.depth import DepthAnythingV2Small, MegaDepthHourglass

# The facts travel with the tests (tests/fixtures/reference), so these tests run in any clone.
REFERENCE = Path(__file__).resolve().parent / "fixtures" / "reference"
needs_reference = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason="tests/fixtures/reference (public checkpoint facts) missing"
)


def _u(n: int, salt: int) -> torch.Tensor:
    j = torch.arange(n, dtype=torch.int64)
    return ((j * 2654435761 + salt * 97531 + 12345) % 2**32).double() / 2**32 - 0.5


def fill_deterministic(model: torch.nn.Module) -> None:
    """The README's fill rule, over the sorted state-dict keys (num_batches_tracked included)."""
    state = model.state_dict()
    for k, key in enumerate(sorted(state)):
        t = state[key]
        u = _u(t.numel(), k + 1)
        if key.endswith("num_batches_tracked"):
            v = torch.zeros_like(u)
        elif key.endswith("running_var"):
            v = 1 + u
        elif key.endswith("running_mean"):
            v = 0.1 * u
        elif t.dim() == 1 and key.endswith("weight"):
            v = 1 + 0.2 * u
        elif t.dim() == 1 and key.endswith("gamma"):
            v = 0.5 + 0.2 * u
        elif t.dim() == 1:
            v = 0.02 * u
        else:
            v = u * math.sqrt(24 / t[0].numel())
        t.copy_(v.reshape(t.shape).to(t.dtype))


def filled(cls: type[torch.nn.Module]) -> torch.nn.Module:
    """`cls()` in eval mode with the fill rule's weights (built on the meta device first:
    the random init it skips costs seconds on a small CPU)."""
    with torch.device("meta"):
        model = cls()
    model = model.to_empty(device="cpu").eval()
    for buf in model.buffers():  # to_empty leaves buffers uninitialised too
        buf.zero_()
    fill_deterministic(model)
    return model


@pytest.fixture(scope="module")
def depth_anything() -> torch.nn.Module:
    return filled(DepthAnythingV2Small)


def deterministic_input(shape: list[int]) -> torch.Tensor:
    return (_u(math.prod(shape), 0) + 0.5).float().reshape(shape)


def _check_fingerprint(y: torch.Tensor, ref: dict) -> None:
    assert list(y.shape) == ref["shape"]
    flat = y.double().flatten()
    got = {"mean": flat.mean(), "std": flat.std(), "min": flat.min(), "max": flat.max()}
    for name, value in got.items():
        assert value.item() == pytest.approx(ref[name], rel=1e-4, abs=1e-7), name
    for index, value in ref["samples"].items():
        assert flat[int(index)].item() == pytest.approx(value, rel=1e-4, abs=1e-6), index


def _fingerprints(model: str) -> dict:
    return json.loads((REFERENCE / "deterministic_fingerprints.json").read_text())[model]


def _shape_of(case: str) -> list[int]:
    return [int(s) for s in case.split("_", 1)[1].split("x")]


@needs_reference
def test_depth_anything_keys_match_the_released_checkpoint_exactly():
    expected = json.loads((REFERENCE / "depth_anything_v2_vits_keys.json").read_text())
    state = DepthAnythingV2Small().state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == expected
    assert sum(v.numel() for v in state.values()) == 24_785_089


@needs_reference
def test_megadepth_keys_match_the_released_checkpoint_exactly():
    expected = json.loads((REFERENCE / "megadepth_hg_keys.json").read_text())["keys"]
    expected = {k.removeprefix("module."): v for k, v in expected.items()}
    state = MegaDepthHourglass().state_dict()
    ours = {k: list(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert ours == expected
    assert sum(1 for k in state if k.endswith("num_batches_tracked")) == 155
    params = sum(p.numel() for p in MegaDepthHourglass().parameters())
    assert params == 5_357_153


@needs_reference
@pytest.mark.parametrize("case", ["input_1x3x518x518", "input_1x3x196x280"])
def test_depth_anything_reproduces_the_reference_fingerprint(case, depth_anything):
    with torch.no_grad():
        y = depth_anything(deterministic_input(_shape_of(case)))
    _check_fingerprint(y, _fingerprints("depth_anything_v2_vits")[case])


@pytest.mark.slow
@needs_reference
def test_megadepth_reproduces_the_reference_fingerprint():
    model = filled(MegaDepthHourglass)
    case = "input_1x3x384x512"
    with torch.no_grad():
        y = model(deterministic_input(_shape_of(case)))
    _check_fingerprint(y, _fingerprints("megadepth_hg")[case])


def test_megadepth_loads_a_state_dict_without_num_batches_tracked():
    source = filled(MegaDepthHourglass)
    old = {k: v for k, v in source.state_dict().items() if "num_batches_tracked" not in k}
    model = MegaDepthHourglass()
    model.load_state_dict(old, strict=True)
    assert torch.equal(model.state_dict()["0.weight"], source.state_dict()["0.weight"])


def test_input_sizes_must_be_multiples_of_the_stride():
    with pytest.raises(ValueError, match="multiples of 14"):
        DepthAnythingV2Small()(torch.zeros(1, 3, 20, 28))
    with pytest.raises(ValueError, match="multiples of 16"):
        MegaDepthHourglass()(torch.zeros(1, 3, 24, 32))
