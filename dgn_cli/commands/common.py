"""What every command shares: the consoles, error handling, shared option aliases."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from dgn_cli.devices import Precision
from dgn_cli.errors import DgnError
from dgn_cli.fsutil import describe_os_error

# Progress and diagnostics go to stderr; results (tables, lists, --json) to stdout, so that
# `dgn weights list > f` and `dgn benchmark | less` get the results and nothing else.
err_console = Console(stderr=True, highlight=False)


def out_console() -> Console:
    """A console for results on stdout (made per use: stdout may be redirected, e.g. by tests).
    Into a file or pipe, lines are never wrapped (a table keeps every cell on one line)."""
    if sys.stdout.isatty():
        return Console(highlight=False)
    return Console(file=sys.stdout, highlight=False, width=400, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error to stderr and return the Exit to raise."""
    # Escape: file names like "clip [1080p].mp4" must not be read as rich markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def cli_errors(func):
    """Turn a `DgnError` raised anywhere below a command into one line on stderr and exit 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DgnError as e:
            raise fail(str(e)) from None
        except OSError as e:  # disk full, read-only, no permission: one line naming the file
            where = e.filename2 or e.filename
            raise fail(
                f"{where}: {describe_os_error(e)}" if where else describe_os_error(e)
            ) from None

    return wrapper


def not_implemented(command: str) -> typer.Exit:
    """Commands whose issue has not landed exit 2 and say so; they never pretend to work."""
    return fail(f"`dgn {command}` is not implemented yet", code=2)


def print_json(payload: Any) -> None:
    """Machine-readable output: one JSON document on stdout."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()


DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device", help="auto | cpu | cuda | cuda:N | mps (auto: CUDA, else MPS, else CPU)"
    ),
]
PrecisionOpt = Annotated[
    Precision,
    typer.Option("--precision", help="auto: bf16 where the GPU/CPU supports it fast, else fp32"),
]
WeightsOpt = Annotated[
    str,
    typer.Option("--weights", help="DGN checkpoint: a registry name, a file path, or 'random'"),
]
DepthModelOpt = Annotated[
    str | None,
    typer.Option("--depth-model", help="depth estimator: a registry name or a file path"),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="print nothing but errors")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print a machine-readable JSON summary")]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="output file or folder")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="replace existing outputs")]
