"""The `dgn` command line: a Typer app assembled from one module per command.

The CLI owns all printing; the library below it raises `DgnError`s and reports progress
through callbacks.

Start-up stays fast: `dgn --help` and `dgn --version` import no command module (and so no
torch, OpenCV or ffmpeg code). The root group lists the commands from `COMMANDS` (name ->
module and one-line help) and imports a command's module only when that command runs or shows
its own help.
"""

from __future__ import annotations

import importlib
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from dgn_cli import __version__

# name -> (module whose register(app) adds it, the line `dgn --help` shows), in help order
COMMANDS = {
    "deblur-image": ("image", "Deblur photos: files, folders (recursive) and globs."),
    "deblur-video": (
        "video",
        "Deblur a video with the five-frame sliding window; same frames, rate and duration, "
        "audio copied, subtitles kept where the container allows.",
    ),
    "depth": (
        "depth",
        "Estimate (or, with --refined, refine) the depth map of photos: a 16-bit PNG of the "
        "normalised inverse depth (1 = nearest) and a colour-mapped PNG.",
    ),
    "train": (
        "train",
        "Train a DGN (image, video, baseline, concat) or the small depth estimator.",
    ),
    "benchmark": (
        "benchmark",
        "Time the model (end to end and per component), count its parameters and GMACs, and "
        "evaluate PSNR/SSIM with the depth ablation on a GOPRO-layout or the synthetic test split.",
    ),
    "export": ("export", "Export a DGN and its depth estimator as ONNX graphs."),
    "weights": ("weights", "List, fetch and verify checkpoints."),
    "data": ("data", "Collect photos and render depth-aware synthetic blur."),
}


def load_command(name: str) -> click.Command:
    """Import the module of command `name` and build its click command."""
    module = importlib.import_module(f"dgn_cli.commands.{COMMANDS[name][0]}")
    sub = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)
    module.register(sub)
    sub.callback()(lambda: None)  # a group even with one command, so it is found by name
    return typer.main.get_command(sub).commands[name]


class _LazyCommand(click.Command):
    """Stands for a command in the root's listing; becomes the real one when it is used."""

    def __init__(self, name: str):
        super().__init__(name, help=COMMANDS[name][1])
        self._real: click.Command | None = None

    def real(self) -> click.Command:
        if self._real is None:
            self._real = load_command(self.name)
        return self._real

    def make_context(self, info_name, args, parent=None, **extra):
        return self.real().make_context(info_name, args, parent=parent, **extra)

    def get_short_help_str(self, limit: int = 45) -> str:
        return COMMANDS[self.name][1]


class LazyGroup(TyperGroup):
    """The root group: commands from COMMANDS, loaded on first use (module docstring)."""

    def list_commands(self, ctx) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx, cmd_name: str) -> click.Command | None:
        return _LazyCommand(cmd_name) if cmd_name in COMMANDS else None


app = typer.Typer(
    name="dgn",
    help="Remove dynamic-scene blur from photos and videos with the Depth Guided Network "
    "(Li et al., IEEE TIP 2020).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    cls=LazyGroup,
)


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
