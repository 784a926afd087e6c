"""`dgn deblur-video`."""

import typer

from dgn_cli.commands.common import not_implemented


def register(app: typer.Typer) -> None:
    @app.command("deblur-video")
    def deblur_video() -> None:
        """Deblur a video with the five-frame sliding window, audio kept."""
        raise not_implemented("deblur-video")
