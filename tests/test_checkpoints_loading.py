"""Loading checkpoint files: cleaning, strict loads, DGN and depth estimators by path and name."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from dgn_cli.checkpoints import (
    load_depth_estimator,
    load_dgn,
    load_state_dict_file,
    load_state_dict_strict,
    read_metadata,
    save_depth_net,
    save_dgn,
)
from dgn_cli.errors import CheckpointError
from dgn_cli.models import DGN
from dgn_cli.models.depth import (
    DepthEstimator,
    MegaDepthHourglass,
)
from dgn_cli.safetensors_file import write_safetensors


def _tiny() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 1, 1))


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {f"_orig_mod.module.{k}": v for k, v in sd.items()},
        lambda sd: {"params": sd},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3},
    ],
    ids=["plain", "module", "compiled+module", "params", "state_dict"],
)
def test_pth_files_are_cleaned(tmp_path, wrap):
    model = _tiny()
    path = tmp_path / "model.pth"
    torch.save(wrap(model.state_dict()), path)
    state = load_state_dict_file(path)
    assert set(state) == set(model.state_dict())
    load_state_dict_strict(_tiny(), state, str(path))


def test_safetensors_files_are_read_first(tmp_path):
    model = _tiny()
    path = tmp_path / "model.bin"  # the suffix does not matter
    save_file({f"module.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(path))
    assert set(load_state_dict_file(path)) == set(model.state_dict())


def test_pickles_with_code_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"weights": torch.zeros(1), "obj": _tiny()}, path)  # a whole module is pickled
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_state_dict_file(path)


def test_garbage_is_refused_in_one_line(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_state_dict_file(path)


def test_strict_load_lists_the_first_missing_and_unexpected_keys():
    state = dict(_tiny().state_dict())
    state.pop("0.weight")
    state["extra.weight"] = torch.zeros(1)
    state["2.weight"] = torch.zeros(1, 4, 3, 3)
    with pytest.raises(CheckpointError) as info:
        load_state_dict_strict(_tiny(), state, "file.pth")
    message = str(info.value)
    assert "1 missing (first: 0.weight)" in message
    assert "1 unexpected (first: extra.weight)" in message
    assert "2.weight [1, 4, 3, 3] vs [1, 4, 1, 1]" in message


def test_megadepth_checkpoint_from_dataparallel_without_num_batches_tracked(tmp_path):
    source = MegaDepthHourglass()
    released = {
        f"module.{k}": v for k, v in source.state_dict().items() if "num_batches_tracked" not in k
    }
    path = tmp_path / "best_generalization_net_G.pth"
    torch.save(released, path)
    estimator = load_depth_estimator(path)
    assert isinstance(estimator, DepthEstimator) and estimator.kind == "megadepth"
    assert torch.equal(estimator.net.state_dict()["0.weight"], source.state_dict()["0.weight"])


def test_depth_anything_checkpoint_in_a_params_wrapper(tmp_path):
    from dgn_cli.models.depth import DepthAnythingV2Small

    with torch.device("meta"):
        net = DepthAnythingV2Small()
    net = net.to_empty(device="cpu")
    for t in net.state_dict().values():
        t.fill_(0.01)
    path = tmp_path / "depth_anything_v2_vits.pth"
    torch.save({"params": net.state_dict()}, path)
    estimator = load_depth_estimator(path)
    assert estimator.kind == "depth-anything-v2"


def test_small_depth_net_round_trip_by_path_and_by_name(
    tmp_path, monkeypatch, untrained_weights, tiny_depth_net
):
    net = tiny_depth_net()
    path = save_depth_net(net, tmp_path / "dgn-depth-small.safetensors", {"steps": 3})
    loaded = load_depth_estimator(path)
    image = torch.rand(1, 3, 17, 23)
    with torch.no_grad():
        expected = net(image).clamp(0, 1)
        assert torch.allclose(loaded(image), expected)
    monkeypatch.setenv("DGN_WEIGHTS_DIR", str(tmp_path))
    by_name = load_depth_estimator("dgn-depth-small")
    assert by_name.name == "dgn-depth-small" and by_name.net.config.widths == (4, 8)


def test_dgn_round_trip_by_path_and_by_name(tmp_path, monkeypatch, tiny_config, untrained_weights):
    model = DGN(tiny_config()).eval()
    path = save_dgn(model, tmp_path / "dgn-image.safetensors")
    assert load_dgn(path).config == model.config
    monkeypatch.setenv("DGN_WEIGHTS_DIR", str(tmp_path))
    by_name = load_dgn("dgn-image")
    for k, v in model.state_dict().items():
        assert torch.equal(by_name.state_dict()[k], v)


def test_load_dgn_refuses_a_depth_name():
    with pytest.raises(CheckpointError, match="not dgn"):
        load_dgn("megadepth")


def test_an_unknown_network_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(_tiny().state_dict(), path)
    with pytest.raises(CheckpointError, match="not a depth checkpoint this tool knows"):
        load_depth_estimator(path)


def test_saving_the_same_weights_twice_gives_the_same_bytes(tmp_path, tiny_config):
    # safetensors writes its metadata map in a random order (its issue #584): without the
    # canonical header, the published sha256 of a checkpoint could not be reproduced
    model = DGN(tiny_config()).eval()
    meta = {f"key{i}": str(i) for i in range(8)} | {"recipe": '{"crop": 160, "note": "é \\"q\\""}'}
    files = [save_dgn(model, tmp_path / f"{i}.safetensors", meta) for i in range(4)]
    assert len({f.read_bytes() for f in files}) == 1
    assert read_metadata(files[0]) == {**meta, "dgn_config": model.config.to_json(), "format": "pt"}
    assert load_dgn(files[0]).config == model.config


def test_the_canonical_header_keeps_the_data_aligned_and_readable(tmp_path):
    tensors = {"b": torch.arange(3, dtype=torch.float16), "a": torch.ones(2, 5)}
    for meta in ({"z": "1", "a": "é\n\t\x01"}, {"x" * n: "y" for n in range(1, 9)}, None):
        path = write_safetensors(tensors, tmp_path / "t.safetensors", meta)
        data = path.read_bytes()
        n = int.from_bytes(data[:8], "little")
        assert n % 8 == 0 and data[8 + n - 1 : 8 + n] in (b"}", b" ")
        assert read_metadata(path) == (meta or {})
        loaded = load_file(str(path))
        assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
