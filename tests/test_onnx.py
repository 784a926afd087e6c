"""ONNX export (dgn export --format onnx) and the onnxruntime backend: the graphs match PyTorch
within 1/255 for the image and the video model, at sizes other than the traced one."""

import json

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dgn_cli import checkpoints
from dgn_cli.cli import app
from dgn_cli.engine import Engine, EngineConfig
from dgn_cli.models import DGN
from dgn_cli.models.depth import DepthEstimator
from dgn_cli.models.dgn import randomize_outputs

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from dgn_cli import onnx_export  # noqa: E402

runner = CliRunner()


def models(tiny_config, tiny_depth_net, frames, input_scale=1.0):
    torch.manual_seed(frames)
    dgn = randomize_outputs(DGN(tiny_config(frames=frames))).eval()
    net = tiny_depth_net(input_scale=input_scale).eval()
    return dgn, DepthEstimator(net, "small", name="tiny-depth")


def engines(tmp_path, dgn, depth):
    onnx_export.export_onnx(dgn, depth, tmp_path / "m.onnx")
    o_dgn, o_depth = onnx_export.load_onnx(tmp_path / "m.onnx")
    cfg = EngineConfig(device="cpu", precision="fp32", tile=0)
    return Engine(cfg, dgn=dgn, depth_estimator=depth), Engine(cfg, dgn=o_dgn,
                                                               depth_estimator=o_depth)  # fmt: skip


@pytest.mark.parametrize("frames", [1, 5])
def test_onnx_matches_pytorch_within_one_level(tmp_path, tiny_config, tiny_depth_net, frames):
    scale = 0.5 if frames == 1 else 1.0
    dgn, depth = models(tiny_config, tiny_depth_net, frames, input_scale=scale)
    torch_engine, onnx_engine = engines(tmp_path, dgn, depth)
    torch.manual_seed(1)
    x = torch.rand(1, 3 * frames, 30, 42)  # not the traced 64x64, not a multiple of 4
    centre = x[:, 3 * (frames // 2) : 3 * (frames // 2) + 3]
    d_t, d_o = torch_engine.estimate_depth(centre), onnx_engine.estimate_depth(centre)
    assert (d_t - d_o).abs().max() < 1 / 255
    img_t, ref_t = torch_engine.restore(x, d_t)
    img_o, ref_o = onnx_engine.restore(x, d_t)
    assert (img_t - x[:, :3]).abs().max() > 0.02  # the models do change the input
    assert (img_t - img_o).abs().max() < 1 / 255
    assert (ref_t - ref_o).abs().max() < 1 / 255
    meta = onnx_export.read_metadata(tmp_path / "m.onnx")
    assert meta["opset"] == str(onnx_export.DEFAULT_OPSET) and meta["pad_multiple"] == "4"
    assert json.loads(meta["dgn_config"])["frames"] == frames
    assert meta["depth_graph"] == "m.depth.onnx"


def test_baseline_exports_without_depth(tmp_path, tiny_config):
    torch.manual_seed(0)
    dgn = randomize_outputs(DGN(tiny_config(variant="baseline"))).eval()
    onnx_export.export_onnx(dgn, None, tmp_path / "b.onnx")
    o_dgn, o_depth = onnx_export.load_onnx(tmp_path / "b.onnx")
    assert o_depth is None and not (tmp_path / "b.depth.onnx").exists()
    x = torch.rand(1, 3, 20, 28) * 2 - 1
    with torch.no_grad():
        assert (dgn(x).image - o_dgn(x).image).abs().max() < 1e-4


def test_cli_export_then_onnxruntime_backend_equals_torch(tmp_path, tiny_config, tiny_depth_net):
    dgn, depth = models(tiny_config, tiny_depth_net, 1)
    checkpoints.save_dgn(dgn, tmp_path / "tiny.safetensors")
    checkpoints.save_depth_net(depth.net, tmp_path / "depth.safetensors")
    r = runner.invoke(app, ["export", "--format", "onnx", str(tmp_path / "tiny.safetensors"),
                            "--depth-model", str(tmp_path / "depth.safetensors"),
                            "-o", str(tmp_path / "tiny.onnx"), "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["metadata"]["dgn_config"]["frames"] == 1 and len(doc["files"]) == 2
    again = runner.invoke(app, ["export", str(tmp_path / "tiny.safetensors"), "-o",
                                str(tmp_path / "tiny.onnx")])  # fmt: skip
    assert again.exit_code == 1 and "exists" in again.output
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), np.random.default_rng(0).integers(0, 256, (36, 50, 3), np.uint8))
    common = ["--device", "cpu", "--precision", "fp32", "-q"]
    r = runner.invoke(app, ["deblur-image", str(src), "-o", str(tmp_path / "t.png"),
                            "--weights", str(tmp_path / "tiny.safetensors"), "--depth-model",
                            str(tmp_path / "depth.safetensors"), *common])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["deblur-image", str(src), "-o", str(tmp_path / "o.png"),
                            "--backend", "onnxruntime", "--weights", str(tmp_path / "tiny.onnx"),
                            *common])  # fmt: skip
    assert r.exit_code == 0, r.output
    a = cv2.imread(str(tmp_path / "t.png")).astype(int)
    b = cv2.imread(str(tmp_path / "o.png")).astype(int)
    assert np.abs(a - b).max() <= 1
    r = runner.invoke(app, ["deblur-image", str(src), "-o", str(tmp_path / "x.png"),
                            "--backend", "onnxruntime", "--weights",
                            str(tmp_path / "tiny.safetensors"), *common])  # fmt: skip
    assert r.exit_code != 0 and ".onnx" in r.output
