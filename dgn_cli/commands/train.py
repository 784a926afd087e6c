"""`dgn train`."""

import typer

from dgn_cli.commands.common import not_implemented


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train() -> None:
        """Train a DGN (image, video, baseline, concat) or the small depth estimator."""
        raise not_implemented("train")
