"""`dgn data photos | synth`."""

import typer

from dgn_cli.commands.common import not_implemented

data_app = typer.Typer(
    help="Collect photos and render depth-aware synthetic blur.", no_args_is_help=True
)


@data_app.command("photos")
def photos() -> None:
    """Collect real photographs from Debian packages and scikit-image."""
    raise not_implemented("data photos")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
