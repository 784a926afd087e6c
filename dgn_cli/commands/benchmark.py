"""`dgn benchmark`."""

import typer

from dgn_cli.commands.common import not_implemented


def register(app: typer.Typer) -> None:
    @app.command("benchmark")
    def benchmark() -> None:
        """Time the model, count its parameters, evaluate PSNR/SSIM on a dataset."""
        raise not_implemented("benchmark")
