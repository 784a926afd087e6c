"""Training losses (paper Sec. III-D, Eq. 4-7) and the depth estimator's loss.

    L = lambda_c * Lc + lambda_p * Lp + lambda_d * Ld (+ lambda_fft * Lfft)
    Lc  content:     mean squared error between I and the sharp image (both in [-1, 1]);
                     the fast recipe uses the Charbonnier (smooth L1) penalty instead
    Lfft frequency:  L1 between the 2-D spectra of I and the sharp image (fast recipe only)
    Lp  perceptual:  mean squared error between VGG-19 conv3_3 features of I and of the sharp
                     image (images mapped from [-1, 1] to ImageNet normalisation)
    Ld  depth:       mean squared error between the refined depth D_r and the depth of the
                     sharp frame (both in [0, 1])

The paper writes squared L2 norms; we use means (MSE) so the loss scale does not depend on
the crop size or batch size and the paper's weights stay meaningful across both.
All terms are computed in float32 whatever the autocast precision of the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LossWeights:
    content: float = 1.0
    perceptual: float = 0.01
    depth: float = 1.0
    fft: float = 0.0  # weight of the frequency-domain L1 term (0 = off)
    content_kind: str = "mse"  # "mse" (paper) or "charbonnier"
    charbonnier_eps: float = 1e-3


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(a.float(), b.float())


def charbonnier(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """mean sqrt((a - b)^2 + eps^2): L1-like, so nearly sharp pixels (small errors) weigh as
    much per unit error as blurred ones; MSE lets a few large errors dominate. Measured +0.2 dB
    over MSE at a fixed step count (shared/QUALITY.md, runs c vs c_mse)."""
    diff = a.float() - b.float()
    return torch.sqrt(diff * diff + eps * eps).mean()


def fft_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean |FFT(a) - FFT(b)| over the 2-D real spectra (re and im): rewards restoring the high
    frequencies that blur removes. (B, C, H, W) x2 -> scalar."""
    fa, fb = torch.fft.rfft2(a.float(), norm="ortho"), torch.fft.rfft2(b.float(), norm="ortho")
    return torch.view_as_real(fa - fb).abs().mean()


class DGNLoss(nn.Module):
    """Eq. 7. forward(image, sharp, depth, depth_target) -> (total, {term name: value}).

    image, sharp: (B, 3, H, W) in [-1, 1]; depth, depth_target: (B, 1, H, W) in [0, 1] or None
    (the no-depth baseline has no depth term). `vgg` is required when weights.perceptual > 0.
    """

    def __init__(self, weights: LossWeights, vgg: nn.Module | None = None):
        super().__init__()
        if weights.perceptual > 0 and vgg is None:
            raise ValueError("the perceptual loss needs the VGG-19 feature network")
        self.weights = weights
        self.vgg = vgg if weights.perceptual > 0 else None

    def forward(
        self,
        image: torch.Tensor,
        sharp: torch.Tensor,
        depth: torch.Tensor | None = None,
        depth_target: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        w = self.weights
        if w.content_kind == "charbonnier":
            terms = {"content": charbonnier(image, sharp, w.charbonnier_eps)}
        else:
            terms = {"content": mse(image, sharp)}
        total = w.content * terms["content"]
        if w.fft > 0:
            terms["fft"] = fft_l1(image, sharp)
            total = total + w.fft * terms["fft"]
        if self.vgg is not None:
            with torch.no_grad():
                target_features = self.vgg(sharp.to(image.dtype))
            terms["perceptual"] = mse(self.vgg(image), target_features)
            total = total + w.perceptual * terms["perceptual"]
        if depth is not None and depth_target is not None and w.depth > 0:
            terms["depth"] = mse(depth, depth_target)
            total = total + w.depth * terms["depth"]
        return total, terms


def gradient_matching(pred: torch.Tensor, target: torch.Tensor, scales: int = 4) -> torch.Tensor:
    """Multi-scale gradient-matching term (MegaDepth-style) on the depth error R = pred - target.

    Mean |dR/dx| + |dR/dy| at `scales` scales (2x average-pooling between them). Invariant to a
    constant offset of the prediction, it penalises only misplaced or smeared depth edges,
    which a plain L2 tolerates (L2 is dominated by large flat regions and favours blurry
    depth). (B, 1, H, W) x2 -> scalar.
    """
    error = pred.float() - target.float()
    total = error.new_zeros(())
    for s in range(scales):
        if s:
            if min(error.shape[-2:]) < 4:
                break
            error = F.avg_pool2d(error, 2)
        dx = (error[..., :, 1:] - error[..., :, :-1]).abs().mean()
        dy = (error[..., 1:, :] - error[..., :-1, :]).abs().mean()
        total = total + dx + dy
    return total


INVARIANT_ANCHOR = 0.1  # weight of the absolute L2 beside the scale-and-shift-invariant one
MAX_ALIGN_SCALE = 10.0  # the alignment stretches a prediction's range at most 10x


def align_scale_shift(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """s * pred + t with (0 <= s <= MAX_ALIGN_SCALE, t) per sample the least-squares fit to
    target (MiDaS-style alignment): what is left is the error in the depth's shape, not its
    level or range.
    (B, 1, H, W) x2 -> (B, 1, H, W), float32."""
    p, q = pred.float().flatten(1), target.float().flatten(1)
    p_mean, q_mean = p.mean(1, keepdim=True), q.mean(1, keepdim=True)
    pc, qc = p - p_mean, q - q_mean
    # s >= 0: an upside-down answer (far said to be near) must not be aligned away, or the
    # net could learn inverted depth that the per-frame min-max would then pass on. A flat or
    # inverted prediction gets s = 0: the target's mean, the best a constant can do.
    # s is a constant of the step (detached) and at most MAX_ALIGN_SCALE: through cov / var its
    # gradient grows as 1 / var near a flat prediction, and a first training run with it blew
    # the logits far negative within 500 steps (the sigmoid saturated at 0, no way back).
    scale = (pc * qc).mean(1, keepdim=True) / pc.pow(2).mean(1, keepdim=True).clamp_min(1e-8)
    scale = scale.clamp(0.0, MAX_ALIGN_SCALE).detach()
    return (scale * pc + q_mean).view_as(pred)


class DepthLoss(nn.Module):
    """Loss of the small depth estimator: L2 + lambda_grad * gradient matching.

    forward(pred, target) -> (total, terms); both (B, 1, H, W) in [0, 1]. invariant=True first
    aligns pred to target by a per-sample scale and shift (`align_scale_shift`): the reference
    depth is min-max normalised per whole frame, so a training crop cannot know its own level
    or range, and the absolute loss may teach a crop-sized net to answer the mean level (the
    shipped estimator's plateau: a per-frame constant). Such a net is `relative`
    (SmallDepthConfig): its whole-frame answer is min-max normalised at inference. Measured
    (BENCHMARKS.md, stretch 5): at 1500 steps it did not read depth from blur either.
    """

    def __init__(self, lambda_grad: float = 0.5, invariant: bool = False):
        super().__init__()
        self.lambda_grad = lambda_grad
        self.invariant = invariant

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        anchor = None
        if self.invariant:
            # The aligned loss has no gradient at a flat prediction (the zero-initialised head's
            # start) and none for the level; a weak absolute term gives both, so the net starts
            # learning and its sigmoid stays away from saturation.
            anchor = mse(pred, target)
            pred = align_scale_shift(pred, target)
        terms = {"depth": mse(pred, target)}
        total = terms["depth"]
        if anchor is not None:
            terms["anchor"] = anchor
            total = total + INVARIANT_ANCHOR * anchor
        if self.lambda_grad > 0:
            terms["gradient"] = gradient_matching(pred, target)
            total = total + self.lambda_grad * terms["gradient"]
        return total, terms
