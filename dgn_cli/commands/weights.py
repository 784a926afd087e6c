"""`dgn weights list | fetch | verify`."""

import typer

from dgn_cli.commands.common import not_implemented

weights_app = typer.Typer(help="List, fetch and verify checkpoints.", no_args_is_help=True)


@weights_app.command("list")
def list_weights() -> None:
    """Show every known checkpoint and whether it is present and verified."""
    raise not_implemented("weights list")


def register(app: typer.Typer) -> None:
    app.add_typer(weights_app, name="weights")
