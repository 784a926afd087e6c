"""dgn: dynamic-scene deblurring with the Depth Guided Network (Li et al., IEEE TIP 2020)."""

__version__ = "0.1.0"

__all__ = ["Deblurrer", "__version__"]


def __getattr__(name: str):
    """`from dgn_cli import Deblurrer`, imported on first use: `import dgn_cli` (and so
    `dgn --help`) stays free of torch."""
    if name == "Deblurrer":
        from dgn_cli.api import Deblurrer

        return Deblurrer
    raise AttributeError(f"module 'dgn_cli' has no attribute {name!r}")
