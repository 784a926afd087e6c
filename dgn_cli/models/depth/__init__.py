"""Monocular depth estimators and the wrapper that puts them in the project's convention.

`DepthAnythingV2Small` and `MegaDepthHourglass` load their public checkpoints unchanged (a
contract other tools check); `DepthEstimator` turns any of them, or our `SmallDepthNet`, into
normalised inverse depth in [0, 1], 1 = nearest, at the input's resolution.
"""

from dgn_cli.models.depth.depth_anything import DepthAnythingV2Small
from dgn_cli.models.depth.estimator import ADAPTERS, DepthEstimator, robust_minmax
from dgn_cli.models.depth.megadepth import MegaDepthHourglass
from dgn_cli.models.depth.small import SmallDepthConfig, SmallDepthNet

__all__ = [
    "ADAPTERS",
    "DepthAnythingV2Small",
    "DepthEstimator",
    "MegaDepthHourglass",
    "SmallDepthConfig",
    "SmallDepthNet",
    "robust_minmax",
]
