"""Training to a wall-clock budget: `dgn train --time-budget SECONDS`.

With a budget the run is measured in time, not steps: the learning-rate schedule, validation
and the end of the run follow the FRACTION of the budget elapsed, and the step count is
whatever fits. So one command ends, validates, exports and reports on time on any hardware
(a 2-core CPU or an H200), which is what a GPU lent for minutes needs.

    budget = TimeBudget(seconds, elapsed_before)   # elapsed_before: from the checkpoint
    budget.start()
    lr = lr_at_fraction(budget.progress(), cfg)
    if budget.should_stop(): ...                   # leaves room for the final val + export

The elapsed time is the training loop's own wall time (steps, validation, checkpoints; the
first steps' compilation included), stored in every checkpoint as `wall_time_s`, so
`--resume` continues the schedule where it stopped. Start-up before the first step (imports,
building the model, starting data workers) is outside the budget and reported as `setup_s`.

The end: the loop stops starting steps once the time left is less than the reserve for what
still has to happen after the last step: the final validation (its measured duration, from
the last validation; an estimate before the first) and the export.
"""

from __future__ import annotations

import math
import time
from typing import Any

# Validation points of a budgeted run: every VAL_EVERY_FRACTION of the budget, and at the end.
VAL_EVERY_FRACTION = 0.25
# Before any validation has been timed, reserve this fraction of the budget for the final one.
FIRST_RESERVE_FRACTION = 0.05
RESERVE_MARGIN = 1.25  # x the last validation's measured duration
EXPORT_RESERVE_S = 1.0  # writing the weights and the manifest


def lr_at_fraction(fraction: float, cfg: Any) -> float:
    """The learning rate at `fraction` (0..1) of the budget: the same shapes as
    `optim.lr_at` with the step replaced by the fraction elapsed.

    cosine: linear warm-up over cfg.warmup of the budget, then a cosine from cfg.lr to
    cfg.lr_final at the end. paper (Eq. 10): cfg.lr for the first half, then linear to
    cfg.lr_final."""
    f = min(1.0, max(0.0, float(fraction)))
    if cfg.schedule == "cosine":
        if cfg.warmup > 0 and f < cfg.warmup:
            return cfg.lr * max(f / cfg.warmup, 1e-3)
        progress = (f - cfg.warmup) / max(1e-9, 1.0 - cfg.warmup) if cfg.warmup > 0 else f
        return cfg.lr_final + (cfg.lr - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * progress))
    if f < 0.5:
        return cfg.lr
    return cfg.lr + (cfg.lr_final - cfg.lr) * min(1.0, (f - 0.5) / 0.5)


class TimeBudget:
    """The clock of a budgeted run: `seconds` in all, `elapsed_before` of them spent by the
    runs this one resumes."""

    def __init__(self, seconds: float, elapsed_before: float = 0.0, val_every: float = 0.25):
        if seconds <= 0:
            raise ValueError("a time budget must be positive")
        self.seconds, self.before, self.val_every = float(seconds), float(elapsed_before), val_every
        self.t0: float | None = None
        self.val_s: float | None = None  # the last validation's duration
        self._next_val = self._val_point_after(self.fraction_of(self.before))

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds of the budget spent, this run and the ones it resumes."""
        return self.before + (time.perf_counter() - self.t0 if self.t0 is not None else 0.0)

    def fraction_of(self, seconds: float) -> float:
        return min(1.0, seconds / self.seconds)

    def fraction(self) -> float:
        return self.fraction_of(self.elapsed())

    def reserve(self) -> float:
        """Seconds to keep for the final validation and the export."""
        if self.val_s is None:
            val = FIRST_RESERVE_FRACTION * self.seconds
        else:
            val = RESERVE_MARGIN * self.val_s
        return val + EXPORT_RESERVE_S

    def progress(self) -> float:
        """How far the training steps are, 0..1: the time elapsed over the time the steps may
        use (the budget less the reserve). The lr schedule follows this, so it reaches its end
        at the last step, not at the end of the budget's final validation."""
        return min(1.0, self.elapsed() / max(self.seconds - self.reserve(), 1e-9))

    def should_stop(self) -> bool:
        """True once the time left is no more than the reserve for the final validation and
        the export."""
        return self.progress() >= 1.0

    def remaining(self) -> float:
        return max(0.0, self.seconds - self.elapsed())

    def _val_point_after(self, fraction: float) -> float:
        if self.val_every <= 0 or fraction >= 1.0:
            return math.inf
        k = math.floor(fraction / self.val_every + 1e-9) + 1
        point = k * self.val_every
        return point if point < 1.0 - 1e-9 else math.inf

    def validation_due(self) -> bool:
        """True when the fraction elapsed has passed the next validation point and there is
        time for it besides the final validation (which is the caller's, at the end). Pure:
        under DDP the ranks reduce their answers, then all call `validated`."""
        if self.fraction() < self._next_val:
            return False
        return self.val_s is None or self.remaining() > 3 * self.reserve()

    def validated(self) -> None:
        """A validation ran: the next one is at the following point."""
        self._next_val = self._val_point_after(max(self.fraction(), self._next_val))

    def timed_validation(self, seconds: float) -> None:
        self.val_s = float(seconds)
