"""Stop a run that is going wrong, loudly, before it overwrites a good checkpoint: dying units
(exact-zero weights), a runaway loss, non-finite weights or a non-finite loss.

    record.update(health_record(model)); check_health(record, cfg, step, ckpt_path)
    watch = DivergenceWatch(cfg.divergence); watch.check(loss, step, ckpt_path)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dgn_cli.train.config import TrainConfig, TrainingError


def health_record(model: nn.Module) -> dict[str, Any]:
    """zero_fraction (exactly-zero parameters) and the SFT condition-weight norms, for the log."""
    from dgn_cli.weight_health import sft_condition_norms, zero_fraction

    record: dict[str, Any] = {"zero_fraction": zero_fraction(model)}
    norms = sft_condition_norms(model)
    if norms:
        record["sft_condition_norm"] = norms
    return record


def check_health(record: dict[str, Any], cfg: TrainConfig, step: int, ckpt_path: Path) -> None:
    """Stop loudly when the network is dying: more than cfg.max_zero_fraction of the weights
    exactly zero (a healthy network has almost none)."""
    fraction = record["zero_fraction"]
    if cfg.max_zero_fraction < 1.0 and fraction > cfg.max_zero_fraction:
        raise TrainingError(
            f"{fraction:.1%} of the weights are exactly zero at step {step} (limit "
            f"{cfg.max_zero_fraction:.0%}): the optimiser or the initial weights are killing "
            f"units; {ckpt_path} holds the last checkpoint. Start from fresh weights or "
            "a healthy --init, or lower --weight-decay"
        )


class DivergenceWatch:
    """Stops a run whose logged loss stays above `factor` x the best logged loss for
    `patience` logs in a row: a finite but runaway loss (e.g. a branch stuck at a saturated
    tanh) never recovers, and every checkpoint after it would overwrite a good one."""

    def __init__(self, factor: float, patience: int = 3):
        self.factor, self.patience = factor, patience
        self.best, self.bad = math.inf, 0

    def check(self, loss: float, step: int, ckpt_path: Path) -> None:
        if self.factor <= 0:
            return
        self.best = min(self.best, loss)
        self.bad = self.bad + 1 if loss > self.factor * self.best else 0
        if self.bad >= self.patience:
            raise TrainingError(
                f"training diverged by step {step}: the loss {loss:.3g} has stayed above "
                f"{self.factor:g} x its best ({self.best:.3g}); {ckpt_path} (and "
                "checkpoint.prev.pt) hold the last checkpoints; restart with a lower --lr"
            )


def check_finite_weights(model: nn.Module, step: int, ckpt_path: Path) -> None:
    """Refuse to checkpoint non-finite weights: the last good checkpoint stays on disk."""
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise TrainingError(
            f"the weights became non-finite by step {step}; the last good checkpoint "
            f"{ckpt_path} is kept; try --precision fp32 or a lower --lr"
        )


def non_finite_loss(step: int, lr: float, precision: str, ckpt_path: Path) -> TrainingError:
    """The error for a non-finite loss, raised before the optimiser applies it."""
    kept = (
        f"the last good checkpoint {ckpt_path} is kept"
        if ckpt_path.exists()
        else "no checkpoint was written yet"
    )
    return TrainingError(
        f"the loss became non-finite at step {step} (lr {lr:.3g}, precision "
        f"{precision}); {kept}; try --precision fp32 or a lower --lr"
    )
