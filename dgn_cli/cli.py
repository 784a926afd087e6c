"""The `dgn` command line: a Typer app assembled from one module per command.

The CLI owns all printing; the library below it raises `DgnError`s and reports progress
through callbacks.
"""

from __future__ import annotations

from typing import Annotated

import typer

from dgn_cli import __version__
from dgn_cli.commands import benchmark, data, depth, image, train, video, weights

app = typer.Typer(
    name="dgn",
    help="Remove dynamic-scene blur from photos and videos with the Depth Guided Network "
    "(Li et al., IEEE TIP 2020).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

for module in (image, video, depth, train, benchmark, weights, data):
    module.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dgn {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """Remove dynamic-scene blur from photos and videos with the Depth Guided Network."""


def main() -> None:
    app()
