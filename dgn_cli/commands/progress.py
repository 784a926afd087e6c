"""Rich progress on stderr, one factory for every command, and the batch listener."""

from __future__ import annotations

from contextlib import AbstractContextManager

from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from dgn_cli.commands.common import err_console


class _FpsColumn(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:5.1f} fps" if speed else "  ... fps", style="cyan")


def progress_bar(*, quiet: bool, fps: bool = False, elapsed: bool = True, eta: bool = True):
    """A transient rich progress display on stderr (nothing when `quiet`): description, bar,
    done/total, then frames per second, elapsed time and ETA as asked."""
    columns: list = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns += [_FpsColumn()] if fps else []
    columns += [TimeElapsedColumn()] if elapsed else []
    columns += [TextColumn("ETA"), TimeRemainingColumn()] if eta else []
    return Progress(*columns, console=err_console, transient=True, disable=quiet)


class BatchProgress(AbstractContextManager):
    """A `dgn_cli.batch.BatchListener` on stderr: one bar for the files, one for the current
    file's tiles; skips and notes unless quiet, errors always."""

    def __init__(self, files: int, quiet: bool):
        self.quiet = quiet
        self.progress = progress_bar(quiet=quiet)
        self.files = self.progress.add_task("files", total=files)
        self.tiles = self.progress.add_task("tiles", total=None, visible=False)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def start_file(self, name: str) -> None:
        self.progress.update(self.files, description=f"[bold]{escape(name)}")
        self.progress.reset(self.tiles, total=None, visible=False)

    def on_tile(self, done: int, total: int) -> None:
        self.progress.update(self.tiles, completed=done, total=total, visible=total > 1)

    def end_file(self) -> None:
        self.progress.advance(self.files)

    def report(self, level: str, text: str) -> None:
        if level == "error":
            err_console.print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True)
        elif not self.quiet:
            err_console.print(f"[yellow]{level}[/] {escape(text)}", soft_wrap=True)
