"""Saving and loading DGN checkpoints (safetensors, config in the metadata).

The registry, Hub resolution and the depth checkpoints build on this module.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from dgn_cli.errors import CheckpointError
from dgn_cli.fsutil import atomic_path
from dgn_cli.models.dgn import DGN, DGNConfig

CONFIG_KEY = "dgn_config"


def save_dgn(
    model: DGN,
    path: str | os.PathLike,
    metadata: dict[str, str] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write `model`'s weights (optionally cast to `dtype`) and config to a safetensors file."""
    meta = {CONFIG_KEY: model.config.to_json(), "format": "pt", **(metadata or {})}
    tensors = {
        k: (v.to(dtype) if dtype is not None else v).detach().contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return Path(path)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e


def load_dgn(path: str | os.PathLike, device: str | torch.device = "cpu") -> DGN:
    """Build a DGN from a safetensors checkpoint's stored config and load its weights (strict)."""
    meta = read_metadata(path)
    if CONFIG_KEY not in meta:
        raise CheckpointError(f"{path}: no '{CONFIG_KEY}' in the metadata; not a dgn checkpoint")
    model = DGN(DGNConfig.from_json(meta[CONFIG_KEY]))
    state = load_file(str(path), device=str(device))
    reference = model.state_dict()
    state = {k: v.to(reference[k].dtype) if k in reference else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match the stored config: {e}") from e
    return model.to(device).eval()
