"""The optimiser and its learning rate: AdamW with decay on conv weights only, `lr_at(step)`.

    optimizer = build_optimizer(model, cfg)
    set_lr(optimizer, lr_at(step, cfg))

`lr_at` depends on the step and the recipe only, so a resumed run continues the schedule.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dgn_cli.train.config import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate of `step`. paper: Eq. 10 in steps, cfg.lr for the first half, then
    linear down to cfg.lr_final at the end. cosine: linear warm-up over cfg.warmup of the
    steps, then a cosine from cfg.lr down to cfg.lr_final at the last step."""
    if cfg.schedule == "cosine":
        warm = max(1, round(cfg.warmup * cfg.steps)) if cfg.warmup > 0 else 0
        if step < warm:
            return cfg.lr * (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, cfg.steps - 1 - warm))
        return cfg.lr_final + (cfg.lr - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * progress))
    half = cfg.steps // 2
    if step < half:
        return cfg.lr
    progress = min(1.0, (step - half) / max(1, cfg.steps - 1 - half))
    return cfg.lr + (cfg.lr_final - cfg.lr) * progress


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> float:
    """Set every parameter group's learning rate to `lr`; returns it."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def decay_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters that get weight decay: conv (and linear) weights, never biases
    and never the SFT layers (their gamma/beta start near the identity and their condition
    convs carry the depth signal; decay there silences the guidance)."""
    return {
        name for name, p in model.named_parameters() if p.dim() > 1 and ".sft." not in f".{name}."
    }


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW: weight decay DECOUPLED from the adaptive step (w -= lr * wd * w), on conv weights
    only. Adam's own `weight_decay` adds wd * w to the gradient before normalising it, so where
    the loss gradient is smaller than that term every step moves a weight one lr-step towards
    zero: the first shipped weights were 79-97 % exact zeros that way."""
    decay = decay_parameter_names(model)
    params = dict(model.named_parameters())
    groups = [
        {"params": [p for n, p in params.items() if n in decay], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in params.items() if n not in decay], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=lr_at(0, cfg), betas=(cfg.beta1, cfg.beta2)
    )
