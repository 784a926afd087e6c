"""`dgn depth`."""

import typer

from dgn_cli.commands.common import not_implemented


def register(app: typer.Typer) -> None:
    @app.command("depth")
    def depth() -> None:
        """Estimate (or refine) the depth map of photos."""
        raise not_implemented("depth")
