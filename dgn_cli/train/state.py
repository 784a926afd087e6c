"""A run's state on disk and in the process: the checkpoint (weights, optimiser, RNG states),
the log, and the flag Ctrl-C sets.

    RUNDIR/checkpoint.pt   save_checkpoint / load_checkpoint; restore() puts it back
    RUNDIR/log.jsonl       JsonLog: one JSON object per line
    StopFlag               SIGINT / SIGTERM finish the step, save and stop
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dgn_cli.fsutil import write_text_atomic
from dgn_cli.train import checkpoint
from dgn_cli.train.config import TrainConfig

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.jsonl"
CHECKPOINT_FORMAT = "dgn-train-checkpoint/1"


# --- RNG -----------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """torch, numpy and python RNGs from `seed`: every rank builds the same model."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def rng_state() -> dict[str, Any]:
    """torch, CUDA, numpy and python RNG states as plain tensors/ints (weights_only-loadable)."""
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "state": torch.tensor(py_state), "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(x) for x in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(Exception):
            torch.cuda.set_rng_state_all(state["cuda"])


# --- the checkpoint ------------------------------------------------------------------------


def save_checkpoint(path: Path, model: nn.Module, optimizer, cfg: TrainConfig, **extra) -> None:
    """Atomically write the full training state as plain tensors, dicts and numbers."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": cfg.to_json(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
        **extra,
    }
    checkpoint.write(path, payload)  # with its sha256; the previous one kept as .prev


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a training checkpoint (weights_only: no arbitrary objects are unpickled) and verify
    its stored sha256; CheckpointError naming the file on any mismatch."""
    return checkpoint.read(path, CHECKPOINT_FORMAT)


@dataclass
class Position:
    """Where a run stands: the next step, the loop's wall time so far, the last metrics."""

    step: int = 0
    wall_time_s: float = 0.0
    val: dict[str, Any] = field(default_factory=dict)
    loss: float = math.nan


def restore(payload: dict[str, Any], model: nn.Module, optimizer) -> Position:
    """Put a checkpoint's weights, optimiser state and RNG states back; where it stood."""
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    set_rng_state(payload["rng"])
    return Position(
        step=int(payload["step"]),
        wall_time_s=float(payload.get("wall_time_s", 0.0)),
        val=dict(payload.get("val", {})),
        loss=float(payload.get("loss", math.nan)),
    )


# --- the run directory's log ---------------------------------------------------------------


class JsonLog:
    """RUNDIR/log.jsonl: one JSON object per line, each with at least `step` and `loss`."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def truncate_after(self, step: int) -> None:
        """On resume, drop lines a crashed run wrote past the checkpoint it resumes from."""
        if not (self.enabled and self.path.exists()):
            return
        kept = []
        for line in self.path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError, TypeError):
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
        write_text_atomic(self.path, "".join(f"{line}\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")


# --- Ctrl-C ----------------------------------------------------------------------------------


class StopFlag:
    """SIGINT/SIGTERM set a flag the loop checks after each step; a second SIGINT aborts."""

    def __init__(self, install: bool):
        self.requested = False
        self._previous: dict[int, Any] = {}
        self._install = install and threading.current_thread() is threading.main_thread()

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopFlag:
        if self._install:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
