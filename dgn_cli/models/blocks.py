"""Small building blocks shared by both DGN branches: convs, residual blocks, the SFT layer."""

from __future__ import annotations

import torch
from torch import nn


def conv(in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1) -> nn.Conv2d:
    """A 'same'-padded conv (odd kernel sizes); stride 2 halves H and W."""
    return nn.Conv2d(in_chs, out_chs, kernel_size, stride=stride, padding=kernel_size // 2)


class ConvAct(nn.Sequential):
    """Conv followed by leaky ReLU: every conv of the paper's tables except Conv24."""

    def __init__(
        self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1, slope: float = 0.2
    ):
        super().__init__(conv(in_chs, out_chs, kernel_size, stride), nn.LeakyReLU(slope))


class UpConvAct(nn.Sequential):
    """Transposed conv that doubles H and W (Upconv16/Upconv20), then leaky ReLU."""

    def __init__(self, in_chs: int, out_chs: int, slope: float = 0.2):
        # kernel 4, stride 2, padding 1 gives exactly 2x with no checkerboard-prone odd overlap.
        super().__init__(
            nn.ConvTranspose2d(in_chs, out_chs, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(slope),
        )


class ResBlock(nn.Module):
    """x + conv(lrelu(conv(x))) with an optional wider inside (`mid_chs`).

    The paper's residual blocks follow SRN-DeblurNet: two convs, an activation between them,
    identity shortcut. (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(
        self, chs: int, kernel_size: int = 3, mid_chs: int | None = None, slope: float = 0.2
    ):
        super().__init__()
        mid_chs = mid_chs or chs
        self.conv1 = conv(chs, mid_chs, kernel_size)
        self.act = nn.LeakyReLU(slope)
        self.conv2 = conv(mid_chs, chs, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class SFTLayer(nn.Module):
    """Spatial feature transform (paper Fig. 3, Eq. 3): SFT(F | gamma, beta) = gamma * F + beta.

    Three convs turn the guidance (B, guide_chs, H, W) into conditional maps phi
    (B, cond_chs, H, W); two separate convs turn phi into gamma and beta (B, feat_chs, H, W).

    Choices where the paper is silent: 3x3 convs, leaky ReLU 0.2 between the three condition
    convs, `cond_chs` = 32 by default. The gamma conv starts with bias 1 and the beta conv with
    bias 0, both with SMALL random weights (`init_scale` x the default initialisation), so an
    untrained layer is close to the identity (training starts from the plain encoder-decoder)
    while its condition convs get a gradient from the first step. Exactly-zero gamma/beta
    weights would block that gradient (d out / d phi = W), and the condition convs would never
    learn: the depth path of the first shipped weights died that way.
    """

    def __init__(
        self,
        guide_chs: int,
        feat_chs: int,
        cond_chs: int = 32,
        kernel_size: int = 3,
        slope: float = 0.2,
        init_scale: float = 0.1,
    ):
        super().__init__()
        self.condition = nn.Sequential(
            ConvAct(guide_chs, cond_chs, kernel_size, slope=slope),
            ConvAct(cond_chs, cond_chs, kernel_size, slope=slope),
            ConvAct(cond_chs, cond_chs, kernel_size, slope=slope),
        )
        self.to_gamma = conv(cond_chs, feat_chs, kernel_size)
        self.to_beta = conv(cond_chs, feat_chs, kernel_size)
        with torch.no_grad():
            self.to_gamma.weight.mul_(init_scale)
            self.to_beta.weight.mul_(init_scale)
        nn.init.ones_(self.to_gamma.bias)
        nn.init.zeros_(self.to_beta.bias)

    def forward(self, features: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        phi = self.condition(guidance)
        return self.to_gamma(phi) * features + self.to_beta(phi)
