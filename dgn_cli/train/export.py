"""`--export NAME`: the final weights as a registry checkpoint, with their manifest entry.

    target = export_path(run)            # checked before training starts, not after hours
    info = export_weights(model, cfg, run, summary)

The file is what `dgn deblur-image --weights NAME` loads; the entry records how it was trained.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dgn_cli.errors import DgnError
from dgn_cli.train.config import RunOptions, TrainConfig


def export_path(run: RunOptions) -> Path | None:
    """Where `--export NAME` writes: EXPORT_DIR/NAME.safetensors (default: the registry's
    weights/ folder, whose manifest.json gets the entry)."""
    if run.export is None:
        return None
    from dgn_cli import registry

    registry.check_name(run.export)  # a name, never a path (checked before training starts)
    folder = Path(run.export_dir) if run.export_dir is not None else registry.weights_dir()
    registry.check_manifest(folder / registry.MANIFEST_NAME)  # readable now, not after hours
    return folder / f"{run.export}.safetensors"


def export_weights(
    model: nn.Module, cfg: TrainConfig, run: RunOptions, summary: dict[str, Any]
) -> dict[str, Any]:
    """Write the final weights as safetensors (config in the metadata) and add or replace the
    registry entry (config, sha256, size, training data, steps, wall time, metrics) in the
    manifest beside the file. An existing entry's licence/input/output/notes are kept."""
    from dgn_cli import checkpoints, registry

    path = export_path(run)
    assert path is not None
    dtype = torch.float16 if run.export_dtype == "fp16" else None
    metadata = {"train_config": cfg.to_json(), "steps": str(summary["step"]), "data": cfg.data}
    if cfg.task == "depth":
        net = copy.deepcopy(model).to(dtype) if dtype is not None else model
        checkpoints.save_depth_net(net, path, metadata=metadata)
        kind, architecture = "depth", "SmallDepthNet"
    else:
        checkpoints.save_dgn(model, path, metadata=metadata, dtype=dtype)
        kind, architecture = "dgn", "DGN"
    digest = checkpoints.sha256_file(path)

    manifest = path.parent / registry.MANIFEST_NAME
    try:
        old = registry.load_manifest(manifest).get(run.export)
    except DgnError:
        old = None
    entry = old.to_dict() if old is not None and old.kind == kind else {}
    entry.update(
        {
            "name": run.export,
            "kind": kind,
            "architecture": architecture,
            "config": json.loads(model.config.to_json()),
            "source": {"file": path.name},
            "sha256": digest,
            "size": path.stat().st_size,
            "status": "trained",
            "training": {
                "task": cfg.task,
                "data": cfg.data,
                "steps": summary["step"],
                "wall_time_s": round(summary["wall_time_s"], 1),
                "world_size": summary["world_size"],
                "device": summary["device"],
                "precision": summary["precision"],
                "hardware": summary.get("hardware"),
                **({"time_budget_s": cfg.time_budget} if cfg.time_budget > 0 else {}),
                "metrics": summary.get("val", {}),
                "dtype": run.export_dtype,
                "recipe": json.loads(cfg.to_json()),
            },
        }
    )
    entry.setdefault("licence", "MIT")
    registry.add_manifest_entry(entry, manifest=manifest)
    return {"path": str(path), "sha256": digest, "manifest": str(manifest)}
