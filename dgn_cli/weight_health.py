"""Health of a network's weights: dead (exactly-zero) parameters and the SFT depth path.

The first shipped weights were 79-97 % zeros: L2 decay inside Adam walked every weight whose
loss gradient was small to zero, and a zero residual block never gets a gradient again. These
two numbers are logged during training so that failure shows in log.jsonl within minutes.
"""

from __future__ import annotations

import torch
from torch import nn

ZERO_TOLERANCE = 1e-6  # |w| below this counts as zero (fp16 exports round tiny weights to 0)


def zero_fraction(model: nn.Module, tol: float = ZERO_TOLERANCE) -> float:
    """Fraction in [0, 1] of all parameter values with |w| < tol."""
    zeros = total = 0
    with torch.no_grad():
        for p in model.parameters():
            zeros += int((p.detach().abs() < tol).sum())
            total += p.numel()
    return zeros / max(total, 1)


def sft_condition_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of the condition-conv weights of every SFT layer, by the layer's module name
    (e.g. "deblur.net.sft"). A norm that shrinks to 0 means the guidance (depth for the
    deblurring branch, the image for the refinement branch) no longer reaches the features."""
    from dgn_cli.models.blocks import SFTLayer

    norms = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, SFTLayer):
                squares = sum(
                    p.detach().float().square().sum()
                    for n, p in module.condition.named_parameters()
                    if n.endswith("weight")
                )
                norms[name] = float(torch.as_tensor(squares).sqrt())
    return norms
