"""Grow trained DGN weights to wider channels without changing what the network computes, so a
training campaign that has flattened at one width continues from its best weights at a larger
one instead of starting again from the identity (Net2Net's idea; our own embedding rule).

    wide = DGN(DGNConfig(widths=(24, 48, 96)))
    wide.load_state_dict(widen_state_dict(narrow_state, wide))   # same outputs, more channels

The rule, for every conv (and transposed conv) of the wide model: the trained kernel fills the
block (old outputs x old inputs); the new outputs keep the wide model's own fresh
initialisation (they compute something new from every input, so they get a gradient from the
first step); the block (old outputs x new inputs) is the fresh initialisation x `quiet`, so the
old channels barely hear the new ones. Every channel sum in the DGN is an addition (residual
blocks, U-Net skips, SFT's gamma * F + beta, the tanh head), never a concatenation, so this
keeps each old channel's value up to the quiet block's leak (~1e-3 of a fresh layer's output).
Quiet rather than exactly zero: exact zeros would read as dead weights to the training health
check, and Adam moves them by one learning-rate step on the first update either way.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

QUIET = 1e-3  # scale of the (old outputs x new inputs) weights against a fresh layer's


def widen_state_dict(
    state: Mapping[str, torch.Tensor], model: nn.Module, quiet: float = QUIET
) -> dict[str, torch.Tensor]:
    """`state` (a narrower model of the same layout) embedded into `model`'s shapes.

    Returns a new dict with `model`'s keys; `model` itself is only read (its fresh
    initialisation supplies the new channels). Raises ValueError when a tensor of `state` is
    wider than `model`'s in any dimension, has another kernel size or rank, or belongs to no
    conv and differs in shape; missing and unexpected keys are left to the strict load.
    """
    own = model.state_dict()
    axes = _conv_axes(model)
    widened = {}
    for key, old in state.items():
        fresh = own.get(key)
        if fresh is None or fresh.shape == old.shape:
            widened[key] = old
            continue
        if key not in axes:
            raise ValueError(f"{key}: {list(old.shape)} cannot grow to {list(fresh.shape)}")
        widened[key] = _embed(key, old, fresh, axes[key], quiet)
    return widened


def _conv_axes(model: nn.Module) -> dict[str, tuple[int, int | None]]:
    """{state key: (output axis, input axis or None)} of every conv weight and bias."""
    axes: dict[str, tuple[int, int | None]] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.ConvTranspose2d):  # weight (in, out, kH, kW)
            out_axis, in_axis = 1, 0
        elif isinstance(module, nn.Conv2d):  # weight (out, in, kH, kW)
            out_axis, in_axis = 0, 1
        else:
            continue
        prefix = f"{name}." if name else ""
        axes[prefix + "weight"] = (out_axis, in_axis)
        if module.bias is not None:
            axes[prefix + "bias"] = (0, None)
    return axes


def _embed(
    key: str, old: torch.Tensor, fresh: torch.Tensor, axes: tuple[int, int | None], quiet: float
) -> torch.Tensor:
    """The wide tensor: `old` in its corner, fresh values elsewhere, the quiet block scaled."""
    out_axis, in_axis = axes
    growable = {out_axis, in_axis} - {None}
    if old.dim() != fresh.dim() or any(
        o > f or (o != f and d not in growable)
        for d, (o, f) in enumerate(zip(old.shape, fresh.shape, strict=True))
    ):
        raise ValueError(
            f"{key}: {list(old.shape)} does not fit inside {list(fresh.shape)} (only channel "
            "counts can grow)"
        )
    wide = fresh.detach().clone()
    if in_axis is not None:  # old outputs listening to new inputs: quiet
        quiet_block = [slice(None)] * wide.dim()
        quiet_block[out_axis] = slice(0, old.shape[out_axis])
        quiet_block[in_axis] = slice(old.shape[in_axis], None)
        wide[tuple(quiet_block)] *= quiet
    wide[tuple(slice(0, n) for n in old.shape)] = old.to(wide.dtype)
    return wide
