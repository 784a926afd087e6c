"""Monocular depth estimators and the wrapper that puts them in the project's convention."""

from dgn_cli.models.depth.estimator import DepthEstimator, robust_minmax
from dgn_cli.models.depth.small import SmallDepthConfig, SmallDepthNet

__all__ = ["DepthEstimator", "SmallDepthConfig", "SmallDepthNet", "robust_minmax"]
