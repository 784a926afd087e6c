"""The MegaDepth hourglass (Li & Snavely, CVPR 2018), the depth network the DGN paper uses.

The architecture is the "hourglass" of Chen et al. (Depth in the Wild, NIPS 2016): a 7x7 stem,
then four nested levels, each the sum of a skip path (inception modules at the level's
resolution) and a down path (2x2 pooling, inceptions, the next level, inceptions, nearest x2
upsample), then a 3x3 conv to one channel. The two outer levels pool with max, the two inner
ones with average (as in the released model; the fingerprint test depends on it). Every
inception module has four branches (1x1, and 1x1-reduce followed by a k x k conv for three
kernel sizes) concatenated along channels; each conv is followed by a non-affine BatchNorm
and a ReLU.

The module tree is made of plain `nn.Sequential`s indexed exactly as the released
`best_generalization_net_G.pth` (a Torch7 model converted to PyTorch), so that file loads with
no renaming once its DataParallel `module.` prefix is stripped. The pooling/upsampling layers
hold no weights but keep their index so the numbering matches.

forward: RGB in [0, 1], (B, 3, H, W), H and W multiples of 16 -> (B, 1, H, W) log depth
(up to an unknown scale: exp() gives depth, larger = farther).
"""

from __future__ import annotations

import torch
from torch import nn

# An inception config: (out_1x1, then (kernel, reduce, out) for each of the three wide branches)
Inception = tuple[int, tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]

# The configurations used by the hourglass (channel counts from the released checkpoint).
A: Inception = (32, (3, 32, 32), (5, 32, 32), (7, 32, 32))  # -> 128
B: Inception = (64, (3, 32, 64), (5, 32, 64), (7, 32, 64))  # -> 256
C: Inception = (64, (3, 64, 64), (7, 64, 64), (11, 64, 64))  # 256 -> 256, wide kernels
D: Inception = (32, (3, 64, 32), (7, 64, 32), (11, 64, 32))  # 128 -> 128, wide kernels
E: Inception = (32, (3, 64, 32), (5, 64, 32), (7, 64, 32))  # 128 -> 128
F16: Inception = (16, (3, 32, 16), (7, 32, 16), (11, 32, 16))  # 128 -> 64
G16: Inception = (16, (3, 64, 16), (7, 64, 16), (11, 64, 16))  # 128 -> 64


def _bn(chs: int) -> nn.BatchNorm2d:
    # Only the stem's BatchNorm is affine in the released model; the rest keep statistics only.
    return nn.BatchNorm2d(chs, affine=False)


class InceptionModule(nn.Module):
    """Four parallel branches concatenated along channels: (B, in, H, W) -> (B, sum(out), H, W)."""

    def __init__(self, in_chs: int, cfg: Inception):
        super().__init__()
        out_1x1, *wide = cfg
        branches = [nn.Sequential(nn.Conv2d(in_chs, out_1x1, 1), _bn(out_1x1), nn.ReLU())]
        for kernel, reduce, out in wide:
            branches.append(
                nn.Sequential(
                    nn.Conv2d(in_chs, reduce, 1),
                    _bn(reduce),
                    nn.ReLU(),
                    nn.Conv2d(reduce, out, kernel, padding=(kernel - 1) // 2),
                    _bn(out),
                    nn.ReLU(),
                )
            )
        # The checkpoint numbers branches directly under the module (`<module>.<branch>.<layer>`).
        for i, branch in enumerate(branches):
            self.add_module(str(i), branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.children()], dim=1)


class SumOfPaths(nn.Module):
    """Runs each child path on the same input and adds the results (the Torch7
    ConcatTable + CAddTable pair)."""

    def __init__(self, *paths: nn.Module):
        super().__init__()
        for i, path in enumerate(paths):
            self.add_module(str(i), path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        paths = list(self.children())
        out = paths[0](x)
        for path in paths[1:]:
            out = out + path(x)
        return out


def _level(paths: tuple[nn.Module, ...]) -> nn.Sequential:
    # Keys read `<level>.0.<path>...`: the level is a Sequential whose first child holds the paths
    # (the converted model also had a reducer at index 1, which has no weights).
    return nn.Sequential(SumOfPaths(*paths))


def _down(pool: nn.Module, *inner: nn.Module) -> nn.Sequential:
    """Pool by 2, the given modules, nearest upsample by 2 (indices kept for the keys)."""
    return nn.Sequential(pool, *inner, nn.Upsample(scale_factor=2, mode="nearest"))


def build_hourglass() -> nn.Sequential:
    """The four nested levels; returns the module at checkpoint index 3 (128 -> 64 channels)."""
    # Level 4 (innermost, 1/16 scale of the stem), 256 channels.
    level4 = _level(
        (
            nn.Sequential(InceptionModule(256, B), InceptionModule(256, B)),
            _down(
                nn.AvgPool2d(2),
                InceptionModule(256, B),
                InceptionModule(256, B),
                InceptionModule(256, B),
            ),
        )
    )
    # Level 3 (1/8), 256 channels.
    level3 = _level(
        (
            nn.Sequential(InceptionModule(256, B), InceptionModule(256, C)),
            _down(
                nn.AvgPool2d(2),
                InceptionModule(256, B),
                InceptionModule(256, B),
                level4,
                InceptionModule(256, B),
                InceptionModule(256, C),
            ),
        )
    )
    # Level 2 (1/4), 128 -> 256 inside -> 128.
    level2 = _level(
        (
            _down(
                nn.MaxPool2d(2),
                InceptionModule(128, A),
                InceptionModule(128, B),
                level3,
                InceptionModule(256, B),
                InceptionModule(256, A),
            ),
            nn.Sequential(InceptionModule(128, A), InceptionModule(128, D)),
        )
    )
    # Level 1 (1/2), 128 -> 64.
    return _level(
        (
            _down(
                nn.MaxPool2d(2),
                InceptionModule(128, A),
                InceptionModule(128, A),
                level2,
                InceptionModule(128, E),
                InceptionModule(128, F16),
            ),
            nn.Sequential(InceptionModule(128, G16)),
        )
    )


class MegaDepthHourglass(nn.Sequential):
    """MegaDepth hourglass (5.36 M parameters). RGB in [0, 1] (B, 3, H, W), H and W multiples
    of 16 -> (B, 1, H, W) log depth. Loads state dicts with or without `num_batches_tracked`."""

    def __init__(self):
        super().__init__(
            nn.Conv2d(3, 128, 7, padding=3),
            nn.BatchNorm2d(128),
            nn.ReLU(),
            build_hourglass(),
            nn.Conv2d(64, 1, 3, padding=1),
        )
        # Checkpoints from PyTorch 0.2 predate `num_batches_tracked`; it only matters for
        # momentum=None training, so a missing one is filled with 0 instead of failing.
        self.register_load_state_dict_pre_hook(_fill_num_batches_tracked)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 16 or w % 16:
            raise ValueError(f"input {h}x{w}: height and width must be multiples of 16")
        return super().forward(x)


def _fill_num_batches_tracked(module, state_dict, prefix, *args, **kwargs) -> None:
    for name, buf in module.named_buffers():
        if name.endswith("num_batches_tracked") and prefix + name not in state_dict:
            state_dict[prefix + name] = torch.zeros_like(buf)
