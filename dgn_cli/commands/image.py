"""`dgn deblur-image`."""

import typer

from dgn_cli.commands.common import not_implemented


def register(app: typer.Typer) -> None:
    @app.command("deblur-image")
    def deblur_image() -> None:
        """Deblur photos (files, folders, globs)."""
        raise not_implemented("deblur-image")
