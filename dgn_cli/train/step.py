"""Two parts of a training step that need care: the module it calls (DDP under torchrun,
torch.compile with a fallback) and the flags every rank must agree on after the forward pass.

    step_model = StepModel(model, info, device, compile=True, note=log_and_emit, step=0)
    loss, terms = step_model.call(lambda net: batch_loss(net, batch, ...), step)
    flags = Flags.agreed(loss, stop, budget, info)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dgn_cli import distributed
from dgn_cli.train.budget import TimeBudget
from dgn_cli.train.state import StopFlag


@dataclass(frozen=True)
class Flags:
    """What every rank must agree on after a step's forward pass."""

    non_finite: bool  # the loss is NaN or inf: stop before the optimiser applies it
    stop: bool  # Ctrl-C / SIGTERM: save and stop after this step
    budget_spent: bool  # the time budget is spent: this step is the last
    val_due: bool  # a budget validation is due
    progress: float  # the budget's progress 0..1 (for the lr)

    @classmethod
    def agreed(
        cls,
        loss: torch.Tensor,
        stop: StopFlag,
        budget: TimeBudget | None,
        info: distributed.DistInfo,
    ) -> Flags:
        """One small collective per step keeps ranks in lock step on a stop or a bad loss;
        their clocks differ slightly, so the max wins."""
        flags = loss.detach().new_zeros(5, dtype=torch.float32)
        flags[0] = (~torch.isfinite(loss.detach())).float()
        flags[1] = float(stop.requested)
        flags[2] = float(budget is not None and budget.should_stop())
        flags[3] = float(budget is not None and budget.validation_due())
        flags[4] = budget.progress() if budget is not None else 0.0
        if info.enabled:
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        non_finite, stop_now, spent, val_due, progress = flags.tolist()
        return cls(non_finite > 0, stop_now > 0, spent > 0, val_due > 0, progress)


class StepModel:
    """The module training steps call: DDP-wrapped under torchrun, torch.compile'd with
    --compile; the plain model stays what is saved, validated and exported. A compiler that is
    missing (no C++ compiler, no Triton, an unsupported op) fails at torch.compile or at the
    first call: training then goes on uncompiled, and `note` gets a compile_fallback record."""

    def __init__(
        self,
        model: nn.Module,
        info: distributed.DistInfo,
        device: torch.device,
        compile: bool,
        note: Callable[[dict[str, Any]], None],
        step: int,
    ):
        net = model
        if info.enabled:
            ids = [device.index] if device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.eager = self.net = net
        self.note = note
        self.first_call = False  # compiled, and the first compiled step has not run yet
        if compile:
            try:
                self.net, self.first_call = torch.compile(net), True
            except Exception as e:  # no compiler backend for this platform
                self._fall_back(step, e)

    def call(self, forward: Callable[[nn.Module], Any], step: int) -> Any:
        """forward(net) with the wrapped net; uncompiled if the first compiled call fails."""
        if not self.first_call:
            return forward(self.net)
        try:
            result = forward(self.net)
        except Exception as e:
            self._fall_back(step, e)
            result = forward(self.net)
        self.first_call = False
        return result

    def _fall_back(self, step: int, e: BaseException) -> None:
        self.net = self.eager
        self.note({"event": "compile_fallback", "step": step, "reason": _reason(e)})


def _reason(e: BaseException) -> str:
    """The first line of an exception, for a log record."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200] if text else ''}"
