"""What every command shares: the consoles, error handling, option aliases, the engine option
group (`engine_options`, `open_engine`) and the batch summary."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from dgn_cli.devices import Precision
from dgn_cli.errors import DgnError
from dgn_cli.fsutil import describe_os_error

if TYPE_CHECKING:
    from dgn_cli.batch import Batch, Record
    from dgn_cli.engine import Engine, EngineConfig

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
TileOpt = Annotated[
    int | None,
    typer.Option(
        "--tile",
        min=0,
        help="tile size in px, context included (0 = whole image; default: the largest that "
        "fits the device's memory budget)",
    ),
]
TileOverlapOpt = Annotated[
    int,
    typer.Option("--tile-overlap", min=0, help="px shared by neighbouring tiles (blended)"),
]
SelfEnsembleOpt = Annotated[
    int,
    typer.Option(
        "--self-ensemble",
        help="1, 2, 4 or 8: average the result over that many flipped/transposed copies of "
        "each tile (x N the time; measured +0.04 / +0.06 / +0.09 dB at 2 / 4 / 8)",
    ),
]

MaxPixelsOpt = Annotated[
    int,
    typer.Option(
        "--max-pixels",
        min=1,
        help="refuse images whose header declares more pixels than this (checked before "
        "decoding; raise it for huge panoramas)",
    ),
]
InputsArg = Annotated[
    list[str], typer.Argument(help="image files, folders (searched recursively) or globs")
]


class AlignMode(StrEnum):
    auto = "auto"
    all = "all"
    off = "off"


AlignOpt = Annotated[
    AlignMode,
    typer.Option(
        "--align",
        help="video model: warp neighbouring frames onto frame t by optical flow first, so "
        "fast motion does not double edges. auto: only those that moved farther than the "
        "model saw in training; all: every one; off: the raw window",
    ),
]


class VideoDepth(StrEnum):
    auto = "auto"
    estimator = "estimator"
    parallax = "parallax"


VideoDepthOpt = Annotated[
    VideoDepth,
    typer.Option(
        "--video-depth",
        help="video model: where the initial depth comes from. estimator: the depth model on "
        "frame t; parallax: how far each pixel moved between the window's frames once the "
        "camera's roll and pan are taken out (no model; the estimator where the camera did "
        "not translate); auto: the one the weights were trained on",
    ),
]


class Backend(StrEnum):
    torch = "torch"
    onnxruntime = "onnxruntime"


BackendOpt = Annotated[
    Backend,
    typer.Option(
        "--backend",
        help="torch, or onnxruntime to run a graph made by `dgn export` (--weights model.onnx; "
        "its depth graph model.depth.onnx is found beside it)",
    ),
]


# The engine option group: every command that runs the DGN takes these seven options.
# `@engine_options` puts them in the command's signature in place of its `engine_opts`
# parameter and hands the command one `EngineOptions`; `engine_opts.config(kind=...)` makes
# the EngineConfig (with the command's own fields), `open_engine` the engine.
ENGINE_OPTIONS: dict[str, Any] = {
    "weights": WeightsOpt,
    "depth_model": DepthModelOpt,
    "device": DeviceOpt,
    "precision": PrecisionOpt,
    "tile": TileOpt,
    "tile_overlap": TileOverlapOpt,
    "self_ensemble": SelfEnsembleOpt,
}


@dataclasses.dataclass(frozen=True)
class EngineOptions:
    """The engine option group's values, as given on the command line."""

    weights: str | None
    depth_model: str | None
    device: str
    precision: str
    tile: int | None
    tile_overlap: int
    self_ensemble: int

    def config(self, **fields: Any) -> EngineConfig:
        """The EngineConfig of these options plus the command's `fields` (kind, seed, ...)."""
        from dgn_cli.engine import EngineConfig

        return EngineConfig(**dataclasses.asdict(self), **fields)


def engine_options(func):
    """Give the command `func(..., engine_opts: EngineOptions, ...)` the engine option group,
    with EngineConfig's own defaults."""
    from dgn_cli.engine import EngineConfig  # command modules import the engine anyway

    defaults = {f.name: f.default for f in dataclasses.fields(EngineConfig)}
    defaults["precision"] = Precision(defaults["precision"])
    sig = inspect.signature(func, eval_str=True)  # real Annotated[...] objects for Typer
    params = []
    for p in sig.parameters.values():
        if p.name != "engine_opts":
            params.append(p)
            continue
        params += [
            inspect.Parameter(name, p.kind, annotation=annotation, default=defaults[name])
            for name, annotation in ENGINE_OPTIONS.items()
        ]

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        values = {name: kwargs.pop(name) for name in ENGINE_OPTIONS}
        values["precision"] = str(values["precision"])
        return func(*args, engine_opts=EngineOptions(**values), **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)
    return wrapper


RANDOM_WARNING = (
    "[bold yellow on red] WARNING [/] [bold yellow]--weights random: seeded RANDOM, "
    "UNTRAINED networks. The outputs are NOT deblurred; use this only for testing.[/]"
)


def open_engine(
    cfg: EngineConfig, *, quiet: bool, backend: str = "torch", random_warning: str = RANDOM_WARNING
) -> Engine:
    """`engine.build_engine(cfg, backend)`, and what the user must know about it on stderr:
    random weights (always), a slow precision and, unless quiet, the device, precision,
    weights, depth model and tiling."""
    from dgn_cli.engine import RANDOM, build_engine

    if cfg.weights == RANDOM and random_warning:
        err_console.print(random_warning)
    engine = build_engine(cfg, str(backend))
    if engine.precision_warning and not quiet:
        err_console.print(f"[yellow]warning:[/] {escape(engine.precision_warning)}")
    if not quiet:
        info = engine.info()
        tile_text = {None: "auto", 0: "whole image"}.get(cfg.tile, f"{cfg.tile} px")
        parts = [f"{info['device_name']}", info["precision"]]
        if cfg.load_dgn:
            sha = f" (sha256 {info['weights_sha256']})" if info.get("weights_sha256") else ""
            parts.append(f"weights {info['weights']}{sha}")
            if cfg.kind != "image":
                parts.append(f"{engine.dgn.config.frames}-frame window")
        if engine.uses_depth:
            parts.append(f"depth {engine.depth_estimator.name}")
        if cfg.load_dgn:
            parts.append(f"tiles {tile_text}, overlap {cfg.tile_overlap} px")
            if cfg.self_ensemble > 1:
                parts.append(f"self-ensemble of {cfg.self_ensemble} passes")
        err_console.print("[dim]dgn:[/] " + escape(", ".join(parts)))
    return engine


def run_on_local_gpus(device: str, shard: tuple[int, int] | None) -> None:
    """--device cuda:all (or cuda:0,1): run this same command once per local GPU, each on
    its sub-shard (dgn_cli.shard.plan_workers), wait for all, and exit with the worst code.
    Returns (does nothing) for a single device."""
    import os
    import subprocess

    import torch

    from dgn_cli.shard import plan_workers, worker_argv

    workers = plan_workers(device, shard, torch.cuda.device_count())
    if workers is None:
        return
    err_console.print(
        f"[dim]dgn:[/] {len(workers)} workers: "
        + ", ".join(f"{d} shard {k}/{n}" for d, (k, n) in workers)
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dgn_cli", *worker_argv(sys.argv[1:], dev, part)],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        for dev, part in workers
    ]
    codes = [p.wait() for p in procs]
    raise typer.Exit(max(codes))


def parse_size(text: str, minimum: int = 1) -> tuple[int, int]:
    """A WIDTHxHEIGHT option value -> (width, height); BadParameter otherwise."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected WIDTHxHEIGHT, e.g. 1280x720") from None
    if w < minimum or h < minimum:
        raise typer.BadParameter(f"{text!r}: width and height must be at least {minimum}")
    return w, h


def finish(
    command: str, engine: Engine, batch: Batch, records: list[Record], as_json: bool, quiet: bool
) -> None:
    """Print the summary (stderr) or the JSON document (stdout); exit 1 if anything failed."""
    for line in batch.errors:
        err_console.print(f"[bold red]error:[/] {line}", soft_wrap=True)
    counts = {s: sum(r.status == s for r in records) for s in ("ok", "skipped", "failed")}
    failed = counts["failed"] + len(batch.errors)
    if as_json:
        print_json(
            {
                "command": command,
                **engine.info(),
                "files": [r.as_dict() for r in records],
                "input_errors": batch.errors,
                "summary": {**counts, "failed": failed, "total": len(records)},
            }
        )
    if not quiet or failed:
        names = ", ".join(Path(r.input).name for r in records if r.status == "failed")
        names = ", ".join(filter(None, [names, *(e.split(":")[0] for e in batch.errors)]))
        text = f"{counts['ok']} written, {counts['skipped']} skipped, {failed} failed"
        err_console.print(text + (f" ({names})" if failed else ""), soft_wrap=True)
    if failed:
        raise typer.Exit(1)
