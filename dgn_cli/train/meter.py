"""The log's train records: loss terms averaged over the steps since the last record and over
the ranks, throughput, the share of time spent waiting for data, and the ETA.

    meter = Meter(global_batch, world_size, t0=time.perf_counter())
    meter.waited(seconds); meter.add(loss, terms)           # every step
    record = meter.record(step, lr, cfg.steps, budget)      # every --log-every steps
"""

from __future__ import annotations

import time
from typing import Any

import torch

from dgn_cli import distributed
from dgn_cli.train.budget import TimeBudget


class Meter:
    """Sums since the last record; `record` reduces them over the ranks and starts afresh."""

    def __init__(self, global_batch: int, world_size: int, t0: float):
        self.global_batch, self.world_size = global_batch, world_size
        self.t_log = t0  # when the sums started
        self.steps, self.wait, self.wait_total = 0, 0.0, 0.0  # wait: seconds waiting for data
        self.sums: dict[str, Any] = {}

    def waited(self, seconds: float) -> None:
        self.wait += seconds
        self.wait_total += seconds

    def add_value(self, name: str, value: torch.Tensor) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + value.detach().float()

    def add(self, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
        """One step's loss and its named terms."""
        self.steps += 1
        for name, value in {"loss": loss, **terms}.items():
            self.add_value(name, value)

    def record(
        self, step: int, lr: float, total_steps: int, budget: TimeBudget | None
    ) -> dict[str, Any]:
        """{"event": "train", step, lr, loss, loss_<term>..., grad_norm, samples_per_s,
        data_wait_fraction, eta_s (+ budget_fraction)}: means over the steps and ranks."""
        names = sorted(self.sums)
        values = distributed.all_reduce_sum(torch.stack([self.sums[n] for n in names]))
        values = (values / (self.steps * self.world_size)).tolist()
        now = time.perf_counter()
        rate = self.steps * self.global_batch / max(now - self.t_log, 1e-9)
        record: dict[str, Any] = {"event": "train", "step": step, "lr": lr}
        record.update(
            {
                n if n in ("loss", "grad_norm") else f"loss_{n}": v
                for n, v in zip(names, values, strict=True)
            }
        )
        record["samples_per_s"] = rate
        record["data_wait_fraction"] = self.wait / max(now - self.t_log, 1e-9)
        if budget is not None:
            record["budget_fraction"] = budget.fraction()
            record["eta_s"] = budget.remaining()
        else:
            record["eta_s"] = (total_steps - step) * self.global_batch / rate
        self.t_log, self.steps, self.sums, self.wait = now, 0, {}, 0.0
        return record
