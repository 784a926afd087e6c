"""Networks: the DGN and the depth estimators. Models never read files or print."""

from dgn_cli.models.dgn import DGN, DGNConfig, DGNOutput, parameter_counts

__all__ = ["DGN", "DGNConfig", "DGNOutput", "parameter_counts"]
