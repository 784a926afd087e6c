"""ONNX export of a DGN and its depth estimator, and the onnxruntime backend that runs them.

    paths = export_onnx(dgn, depth_estimator, "model.onnx")   # model.onnx + model.depth.onnx
    dgn, depth = load_onnx("model.onnx", device)   # for Engine(cfg, dgn=dgn, depth_estimator=depth)

Two graphs, both with dynamic batch, height and width:

- `model.onnx`, the DGN: inputs `frames` (B, 3F, H, W) in [-1, 1] (F = 1 image model, 5 video
  model: frames t-2 .. t+2 stacked) and `depth` (B, 1, H, W), the initial depth in [0, 1]
  (1 = nearest; absent for the no-depth baseline); outputs `image` (B, 3, H, W) in [-1, 1]
  (unclamped) and `refined_depth` (B, 1, H, W). H and W must be multiples of 4: pad with
  reflection and crop back (`pad_multiple` in the metadata).
- `model.depth.onnx`, the project's small depth network (dgn-depth-small): input `image`
  (B, 3, H, W) RGB in [0, 1], H and W multiples of its `pad_multiple`; output `depth`
  (B, 1, H, W) normalised inverse depth in [0, 1]. Its `input_scale` (metadata) says at which
  scale it sees the image (area-downscaled, the result bilinearly upscaled). Depth Anything V2
  and MegaDepth are not exported (their percentile normalisation has no ONNX operator): the
  DGN graph alone is written, and a caller feeds it any depth in the convention above.

Metadata (`metadata_props`): dgn_config (JSON), opset, pad_multiple, inputs/outputs in words,
source weights and their sha256, dgn version, and the depth graph's file name.

`OnnxDGN` and `OnnxDepth` are parameter-free torch modules that pad, run onnxruntime and crop,
so the engine's tiling, depth handling and masks work unchanged (`--backend onnxruntime`).
The export uses torch's TorchScript-based exporter (needs the `onnx` package); running needs
`onnxruntime` (`pip install "dgn[onnx]"`).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dgn_cli.errors import CheckpointError, DgnError
from dgn_cli.models import DGN, DGNConfig
from dgn_cli.models.depth import DepthEstimator, SmallDepthConfig, SmallDepthNet
from dgn_cli.models.dgn import PAD_MULTIPLE, DGNOutput
from dgn_cli.tensors import pad_to_multiple

DEFAULT_OPSET = 17
TRACE_SIDE = 64  # the example input's side (a multiple of every pad multiple)


def depth_path_for(path: str | os.PathLike) -> Path:
    """model.onnx -> model.depth.onnx (beside it)."""
    p = Path(path)
    return p.with_name(p.stem + ".depth" + (p.suffix or ".onnx"))


def _need(module: str, purpose: str):
    try:
        return __import__(module)
    except ImportError:
        raise DgnError(
            f"{purpose} needs the '{module}' package: pip install onnx onnxruntime "
            '(or pip install "dgn[onnx]")'
        ) from None


class _DGNGraph(nn.Module):
    def __init__(self, dgn: DGN):
        super().__init__()
        self.dgn = dgn

    def forward(self, frames, depth=None):
        out = self.dgn(frames, depth)
        return (out.image, out.depth) if out.depth is not None else (out.image,)


class _DepthGraph(nn.Module):
    def __init__(self, net: SmallDepthNet):
        super().__init__()
        self.net = net

    def forward(self, image):
        return self.net._predict(image).clamp(0, 1)


def _export(module: nn.Module, args: tuple, path: Path, inputs, outputs, opset: int) -> None:
    dims = {n: {0: "batch", 2: "height", 3: "width"} for n in [*inputs, *outputs]}
    with warnings.catch_warnings():  # the tracer's notes on shape arithmetic: expected here
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dims,
            opset_version=opset,
            dynamo=False,
        )


def _set_metadata(path: Path, meta: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, str(v)
    model.producer_name = "dgn"
    onnx.save(model, str(path))


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata_props of an ONNX file written by `export_onnx`."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def export_onnx(
    dgn: DGN,
    depth: DepthEstimator | None,
    path: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    source: dict[str, str] | None = None,
) -> dict[str, Path]:
    """Write the DGN graph to `path` and (for a SmallDepthNet estimator) the depth graph to
    `depth_path_for(path)`. -> {"dgn": path, "depth": path or absent}."""
    _need("onnx", "ONNX export")
    from dgn_cli import __version__

    path = Path(path)
    dgn = dgn.float().cpu().eval()
    cfg = dgn.config
    s = TRACE_SIDE
    frames = torch.rand(1, cfg.image_chs * cfg.frames, s, s) * 2 - 1
    written: dict[str, Path] = {}
    common = {"dgn_version": __version__, "opset": opset, **(source or {})}
    depth_file = None
    if depth is not None and cfg.uses_depth:
        if depth.kind != "small" or not isinstance(depth.net, SmallDepthNet):
            raise DgnError(
                f"the depth estimator {depth.name!r} cannot be exported to ONNX (only the "
                "project's small depth network can); use --depth-model dgn-depth-small"
            )
        net = depth.net.float().cpu().eval()
        depth_file = depth_path_for(path)
        multiple = 2 ** (len(net.down) - 1)
        _export(_DepthGraph(net), (torch.rand(1, 3, s, s),), depth_file, ["image"], ["depth"],
                opset)  # fmt: skip
        _set_metadata(
            depth_file,
            {
                **common,
                "graph": "depth",
                "depth_config": net.config.to_json(),
                "depth_name": depth.name,
                "pad_multiple": multiple,
                "input_scale": net.config.input_scale,
                "inputs": "image: (B,3,H,W) RGB in [0,1], H and W multiples of pad_multiple "
                "(reflect-pad, crop back); seen at input_scale (area downscale)",
                "outputs": "depth: (B,1,H,W) normalised inverse depth in [0,1], 1 = nearest",
            },
        )
        written["depth"] = depth_file
    if cfg.uses_depth:
        args = (frames, torch.rand(1, 1, s, s))
        inputs, outputs = ["frames", "depth"], ["image", "refined_depth"]
    else:
        args, inputs, outputs = (frames,), ["frames"], ["image"]
    _export(_DGNGraph(dgn), args, path, inputs, outputs, opset)
    _set_metadata(
        path,
        {
            **common,
            "graph": "dgn",
            "dgn_config": cfg.to_json(),
            "pad_multiple": PAD_MULTIPLE,
            "inputs": f"frames: (B,{cfg.image_chs * cfg.frames},H,W) in [-1,1] "
            f"({cfg.frames} frame(s) stacked, centre restored)"
            + ("; depth: (B,1,H,W) initial depth in [0,1], 1 = nearest" if cfg.uses_depth else "")
            + "; H and W multiples of pad_multiple (reflect-pad, crop back)",
            "outputs": "image: (B,3,H,W) in [-1,1], clamp it"
            + ("; refined_depth: (B,1,H,W) in [0,1]" if cfg.uses_depth else ""),
            "depth_graph": depth_file.name if depth_file else "",
        },
    )
    written["dgn"] = path
    return written


# ------------------------------------------------------------------------------ running
def _session(path: Path, device: torch.device):
    ort = _need("onnxruntime", "--backend onnxruntime")
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        idx = device.index or 0
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": idx}))
    options = ort.SessionOptions()
    threads = torch.get_num_threads()
    options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types
        raise CheckpointError(f"{path}: not a model onnxruntime can run ({e})") from None


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().contiguous().numpy()


class OnnxDGN(nn.Module):
    """An exported DGN graph behind the DGN interface: forward(frames [-1,1], depth) ->
    DGNOutput; any H x W (padded to a multiple of 4 and cropped, as DGN does)."""

    def __init__(self, path: str | os.PathLike, device: torch.device | str = "cpu"):
        super().__init__()
        self.path = Path(path)
        meta = read_metadata(self.path)
        if meta.get("graph") != "dgn" or "dgn_config" not in meta:
            raise CheckpointError(f"{self.path}: not a DGN graph written by `dgn export`")
        self.config = DGNConfig.from_json(meta["dgn_config"])
        self.metadata = meta
        self.session = _session(self.path, torch.device(device))

    def forward(
        self, frames: torch.Tensor, depth: torch.Tensor | None = None, refine: bool = True
    ) -> DGNOutput:
        """DGN.forward's contract; the exported graph always refines the depth it is given."""
        if not refine:
            raise DgnError("an ONNX graph always refines depth: run the ablation with PyTorch")
        h, w = frames.shape[-2:]
        feed = {"frames": _np(pad_to_multiple(frames, PAD_MULTIPLE))}
        if self.config.uses_depth:
            feed["depth"] = _np(pad_to_multiple(depth, PAD_MULTIPLE))
        outs = self.session.run(None, feed)
        image = torch.from_numpy(outs[0])[..., :h, :w].to(frames.device)
        refined = None
        if self.config.uses_depth:
            refined = torch.from_numpy(outs[1])[..., :h, :w].to(frames.device)
        return DGNOutput(image, refined)


class OnnxDepthNet(nn.Module):
    """An exported small depth graph behind SmallDepthNet's interface ([0,1] RGB -> depth)."""

    def __init__(self, path: str | os.PathLike, device: torch.device | str = "cpu"):
        super().__init__()
        self.path = Path(path)
        meta = read_metadata(self.path)
        if meta.get("graph") != "depth":
            raise CheckpointError(f"{self.path}: not a depth graph written by `dgn export`")
        self.config = SmallDepthConfig.from_json(meta["depth_config"])
        self.multiple = int(meta["pad_multiple"])
        self.session = _session(self.path, torch.device(device))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        s = float(self.config.input_scale)
        x = image
        if s != 1.0:
            size = (max(1, round(h * s)), max(1, round(w * s)))
            x = F.interpolate(image, size=size, mode="area")
        sh, sw = x.shape[-2:]
        x = pad_to_multiple(x, self.multiple)
        out = self.session.run(None, {"image": _np(x)})[0]
        depth = torch.from_numpy(out)[..., :sh, :sw].to(image.device)
        if s != 1.0:
            depth = F.interpolate(depth, size=(h, w), mode="bilinear", align_corners=False)
        return depth


def load_onnx(
    path: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[OnnxDGN, DepthEstimator | None]:
    """The DGN graph at `path` and its depth graph (None when it was exported without one)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such ONNX file; make one with dgn export")
    dgn = OnnxDGN(path, device)
    name = dgn.metadata.get("depth_graph")
    depth = None
    if name:
        depth_file = path.with_name(name)
        if not depth_file.is_file():
            raise CheckpointError(
                f"{depth_file}: the depth graph named in {path.name} is missing; keep the two "
                "files together or pass --depth-model"
            )
        net = OnnxDepthNet(depth_file, device)
        depth = DepthEstimator(net, "small", name=depth_file.name)
    return dgn, depth


def describe(path: str | os.PathLike) -> dict:
    """The metadata of an exported graph, with the dgn_config parsed (for --json)."""
    meta = read_metadata(path)
    if "dgn_config" in meta:
        meta["dgn_config"] = json.loads(meta["dgn_config"])
    return meta
