"""`dgn deblur-image`, and the batch machinery `dgn depth` shares with it.

    dgn deblur-image photo.jpg -o sharp.jpg
    dgn deblur-image shoot/ 'extra/*.png' -o sharp/ --save-depth --compare

One INPUT that is a file -> OUT is that output file; several inputs, a folder or a glob ->
OUT is a folder mirroring the input tree (relative to each folder, or to a glob's fixed
prefix). Outputs keep the input's format unless --format (or OUT's extension) says otherwise.
Existing outputs are skipped unless --overwrite; an output that would replace an input is
refused; a file that cannot be read is reported in one line and the batch goes on; the exit
code is 1 if any file failed. Extras beside each output: `<name>.depth.png` (--save-depth:
the refined depth D_r the network used, 16-bit PNG) and `<name>.compare.<ext>`
(--compare: blurred | depth (colour-mapped) | [mask |] deblurred, 8-bit).

--strength and --keep-background / --keep-foreground (dgn_cli.blend) mix the result with the
input in linear light, everywhere or where the refined depth says far (or near).
"""

from __future__ import annotations

import atexit
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import cv2
import numpy as np
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from dgn_cli import blend, io
from dgn_cli.commands.common import (
    DepthModelOpt,
    DeviceOpt,
    JsonOpt,
    OverwriteOpt,
    Precision,
    PrecisionOpt,
    QuietOpt,
    WeightsOpt,
    cli_errors,
    err_console,
    print_json,
)
from dgn_cli.engine import DEFAULT_DEPTH, DEFAULT_OVERLAP, RANDOM, Engine, EngineConfig
from dgn_cli.errors import DgnError, OutputError
from dgn_cli.shard import in_shard, parse_shard


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


class ImageFormat(StrEnum):
    png = "png"
    jpg = "jpg"
    tiff = "tiff"
    webp = "webp"
    bmp = "bmp"


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
FormatOpt = Annotated[
    ImageFormat | None,
    typer.Option("--format", help="output format (default: OUT's extension, else the input's)"),
]
QualityOpt = Annotated[
    int | None,
    typer.Option("--quality", min=1, max=100, help="JPEG/WebP quality (default 95)"),
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
StrengthOpt = Annotated[
    float,
    typer.Option(
        "--strength",
        min=0.0,
        max=1.0,
        help="how much of the deblurred result to use, mixed with the input in linear light "
        "(0 = the input, 1 = the full result)",
    ),
]
KeepBackgroundOpt = Annotated[
    bool,
    typer.Option(
        "--keep-background",
        "--only-near",
        help="keep the input where the depth says far (bokeh, haze stay as shot); only what "
        "is nearer than --threshold is deblurred, with a soft feathered edge",
    ),
]
KeepForegroundOpt = Annotated[
    bool,
    typer.Option(
        "--keep-foreground",
        "--only-far",
        help="the other way round: keep the input where the depth says near (an out-of-focus "
        "foreground stays as shot)",
    ),
]
ThresholdOpt = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        min=0.0,
        max=1.0,
        help="depth (0 = far, 1 = nearest) splitting near from far for --keep-background / "
        "--keep-foreground (default: automatic, Otsu's split of the depth histogram)",
        show_default=False,
    ),
]
FeatherOpt = Annotated[
    float | None,
    typer.Option(
        "--feather",
        min=0.0,
        help="blur of the mask's edge in px (default 0.3 % of the long side)",
        show_default=False,
    ),
]
ShardOpt = Annotated[
    str | None,
    typer.Option(
        "--shard",
        help="K/N: do only shard K (0..N-1) of the work, so N machines (a SLURM array, a "
        "Kubernetes Indexed Job, GNU parallel) share it; photos by a hash of their path",
        show_default=False,
    ),
]
InputsArg = Annotated[
    list[str], typer.Argument(help="image files, folders (searched recursively) or globs")
]


# ------------------------------------------------------------------------------ engine
def build_engine(
    *,
    weights: str | None,
    depth_model: str | None,
    device: str,
    precision: Precision | str,
    tile: int | None,
    tile_overlap: int,
    quiet: bool,
    load_dgn: bool = True,
    kind: str = "image",
    backend: Backend | str = Backend.torch,
) -> Engine:
    """The engine for a command (`kind` image or video picks the default weights); says loudly
    when the weights are random, and (unless quiet) which device and precision run."""
    cfg = EngineConfig(
        weights=weights,
        depth_model=depth_model,
        device=device,
        precision=str(precision),
        tile=tile,
        tile_overlap=tile_overlap,
        load_dgn=load_dgn,
        kind=kind,
    )
    if cfg.weights == RANDOM:
        err_console.print(
            "[bold yellow on red] WARNING [/] [bold yellow]--weights random: seeded RANDOM, "
            "UNTRAINED networks. The outputs are NOT deblurred; use this only for testing.[/]"
        )
    if str(backend) == Backend.onnxruntime:
        engine = _onnx_engine(cfg, depth_model)
    else:
        engine = Engine(cfg)
    if not quiet:
        info = engine.info()
        tile_text = {None: "auto", 0: "whole image"}.get(cfg.tile, f"{cfg.tile} px")
        parts = [f"{info['device_name']}", info["precision"]]
        if load_dgn:
            sha = f" (sha256 {info['weights_sha256']})" if info.get("weights_sha256") else ""
            parts.append(f"weights {info['weights']}{sha}")
            if kind != "image":
                parts.append(f"{engine.dgn.config.frames}-frame window")
        if engine.uses_depth:
            parts.append(f"depth {engine.depth_estimator.name}")
        if load_dgn:
            parts.append(f"tiles {tile_text}, overlap {cfg.tile_overlap} px")
        err_console.print("[dim]dgn:[/] " + ", ".join(parts))
    return engine


def _onnx_engine(cfg: EngineConfig, depth_model: str | None) -> Engine:
    """An engine whose DGN (and depth estimator, unless --depth-model names one) are ONNX
    graphs run by onnxruntime; tiling, depth and masks work as with torch."""
    from dgn_cli import devices, onnx_export
    from dgn_cli.engine import load_depth

    if cfg.weights is None or not str(cfg.weights).endswith(".onnx"):
        raise typer.BadParameter(
            "--backend onnxruntime runs a graph made by `dgn export`: give --weights FILE.onnx",
            param_hint="--weights",
        )
    cfg.precision = "fp32"  # the graph is float32; autocast does not reach onnxruntime
    device = devices.resolve_device(cfg.device)
    dgn, depth = onnx_export.load_onnx(cfg.weights, device)
    if cfg.kind == "image" and dgn.config.frames != 1:
        raise typer.BadParameter(f"{cfg.weights} is a video model; use dgn deblur-video")
    if depth_model is not None or (depth is None and dgn.config.uses_depth):
        depth = load_depth(depth_model or DEFAULT_DEPTH, device)
    return Engine(cfg, dgn=dgn, depth_estimator=depth)


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


# ------------------------------------------------------------------------------ progress
class BatchProgress(AbstractContextManager):
    """Rich progress on stderr: one bar for the files, one for the current file's tiles."""

    def __init__(self, files: int, enabled: bool):
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
            disable=not enabled,
        )
        self.files = self.progress.add_task("files", total=files)
        self.tiles = self.progress.add_task("tiles", total=None, visible=False)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def start_file(self, name: str) -> None:
        self.progress.update(self.files, description=f"[bold]{name}")
        self.progress.reset(self.tiles, total=None, visible=False)

    def on_tile(self, done: int, total: int) -> None:
        self.progress.update(self.tiles, completed=done, total=total, visible=total > 1)

    def end_file(self) -> None:
        self.progress.advance(self.files)


# ------------------------------------------------------------------------------ batches
@dataclass
class Job:
    src: Path
    dst: Path
    # The outputs this run writes (the main one and its extras); None = all of them. A rerun
    # of a batch whose extras failed (disk full) writes only the missing ones.
    write: set[Path] | None = None
    key: str = ""  # the input's path relative to its folder: what --shard hashes

    def wants(self, path: Path) -> bool:
        return self.write is None or path in self.write


@dataclass
class Batch:
    jobs: list[Job]
    errors: list[str]  # inputs that matched nothing
    to_file: bool


def plan_batch(
    inputs: list[str],
    output: Path | None,
    *,
    ext: str | None,
    stem_suffix: str = "",
) -> Batch:
    """Expand the inputs and decide each output path (see the module docstring).

    `ext`: the output extension for every file (None = keep each input's). `output` None:
    each output goes beside its input as NAME`stem_suffix`.EXT (inputs already named so are
    left out of folders and globs, so a rerun does not deblur its own outputs)."""
    single = len(inputs) == 1 and Path(inputs[0]).expanduser().is_file()
    if output is None:
        found, errors = io.expand_inputs(inputs)
        if stem_suffix and not single:
            found = [f for f in found if not f.path.stem.endswith(stem_suffix)]
        dsts = [
            f.path.with_name(f.path.stem + stem_suffix + (ext or f.path.suffix.lower()))
            for f in found
        ]
        jobs = [Job(f.path, d, key=_key(f)) for f, d in zip(found, dsts, strict=True)]
        return Batch(jobs, errors, single)
    output = output.expanduser()
    looks_like_file = (
        not output.is_dir() and io.is_image_path(output) and not str(output).endswith(("/", "\\"))
    )
    many = len(inputs) > 1 or Path(inputs[0]).expanduser().is_dir() or set("*?[") & set(inputs[0])
    if looks_like_file and many:
        raise OutputError(
            f"{output}: several inputs (or a folder or glob) need -o to be a folder, "
            f"not one file; use e.g. -o {output.with_suffix('')}/"
        )
    to_file = single and not output.is_dir() and output.suffix != ""
    to_file = to_file and not str(output).endswith(("/", "\\"))
    exclude = None if to_file else output
    found, errors = io.expand_inputs(inputs, exclude=exclude)
    dsts = io.output_paths(found, output, to_file, ext, stem_suffix)
    jobs = [Job(f.path, d, key=_key(f)) for f, d in zip(found, dsts, strict=True)]
    return Batch(jobs, errors, to_file)


def _key(found: io.Found) -> str:
    """The path --shard hashes: relative to the input folder, so it is the same on every
    machine whatever the mount point."""
    p, base = found.path, found.base
    return (p.relative_to(base) if p.is_relative_to(base) else Path(p.name)).as_posix()


def select_shard(batch: Batch, shard: tuple[int, int] | None) -> Batch:
    """Only the jobs of `shard` (dgn_cli.shard: by a hash of each input's relative path)."""
    if shard is None:
        return batch
    jobs = [j for j in batch.jobs if in_shard(j.key, shard)]
    return Batch(jobs, batch.errors, batch.to_file)


@dataclass
class Record:
    """One file's outcome, for the summary and --json."""

    input: str
    output: str
    status: str = "ok"  # ok | skipped | failed
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = {"input": self.input, "output": self.output, "status": self.status}
        if self.error:
            d["error"] = self.error
        return {**d, **self.extra}


def run_batch(
    batch: Batch,
    process: Callable[[Job, BatchProgress], dict[str, Any]],
    *,
    overwrite: bool,
    quiet: bool,
    extra_outputs: Callable[[Path], list[Path]] = lambda dst: [],
) -> list[Record]:
    """Run `process` on each job; refuse outputs equal to an input, skip existing outputs
    unless `overwrite`, report a failing file in one line and go on."""
    inputs = {j.src.resolve() for j in batch.jobs}
    planned: set[Path] = set()
    records: list[Record] = []
    with BatchProgress(len(batch.jobs), enabled=not quiet) as prog:
        for job in batch.jobs:
            rec = Record(str(job.src), str(job.dst))
            records.append(rec)
            prog.start_file(job.src.name)
            targets = [job.dst, *extra_outputs(job.dst)]
            try:
                resolved = [t.resolve() for t in targets]
                if any(t in inputs for t in resolved):
                    raise OutputError(
                        f"{job.dst}: refusing to overwrite an input; choose another -o"
                    )
                if any(t in planned for t in resolved):
                    raise OutputError(f"{job.dst}: two inputs would write this same output")
                planned.update(resolved)
                # An item is done only when all its outputs exist: a rerun makes the missing
                # ones (e.g. a --compare that failed on a full disk) and keeps the others.
                missing = [t for t in targets if not t.exists()]
                if not overwrite and not missing:
                    rec.status = "skipped"
                    if not quiet:
                        err_console.print(
                            f"[yellow]skip[/] {job.dst} exists (use --overwrite to replace it)"
                        )
                else:
                    job.write = None if overwrite or len(missing) == len(targets) else set(missing)
                    t0 = time.perf_counter()
                    rec.extra = process(job, prog)
                    if job.write is not None:
                        rec.extra["completed"] = [str(t) for t in missing]
                        rec.extra.setdefault("notes", []).append(
                            "made the missing " + ", ".join(t.name for t in missing)
                        )
                    rec.extra["seconds"] = round(time.perf_counter() - t0, 3)
                    for note in rec.extra.get("notes", []):
                        if not quiet:
                            err_console.print(f"[yellow]note[/] {job.dst}: {note}")
            except (DgnError, OSError) as e:
                rec.status, rec.error = "failed", str(e)
                err_console.print(f"[bold red]error:[/] {e}", soft_wrap=True)
            prog.end_file()
    return records


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


# ------------------------------------------------------------------------------ pictures
COLORMAPS = {
    name.removeprefix("COLORMAP_").lower(): getattr(cv2, name)
    for name in dir(cv2)
    if name.startswith("COLORMAP_")
}


def colorize(depth: np.ndarray, colormap: str = "turbo") -> np.ndarray:
    """(H, W) float depth in [0, 1] -> (H, W, 3) uint8 RGB through an OpenCV colormap
    (near = the hot end); "gray" gives a plain gray ramp."""
    d8 = (np.clip(depth, 0, 1) * 255 + 0.5).astype(np.uint8)
    if colormap == "gray":
        return np.repeat(d8[:, :, None], 3, axis=2)
    return cv2.applyColorMap(d8, COLORMAPS[colormap])[:, :, ::-1]


def write_depth16(path: Path, depth) -> None:
    """(1, 1, H, W) tensor in [0, 1] -> 16-bit grayscale PNG (0 = far, 65535 = nearest)."""
    io.write_image(path, io.from_tensor(depth, np.uint16, gray=True))


def compare_panel(
    blurred: np.ndarray, depth_rgb: np.ndarray, sharp: np.ndarray, mask_rgb=None
) -> np.ndarray:
    """blurred | depth | [mask |] deblurred side by side, 8-bit RGB, 8-px white gaps."""
    pictures = (blurred, depth_rgb, *([mask_rgb] if mask_rgb is not None else []), sharp)
    panels = [io.convert_dtype(p, np.dtype(np.uint8)) for p in pictures]
    gap = np.full((panels[0].shape[0], 8, 3), 255, np.uint8)
    row = [panels[0]]
    for p in panels[1:]:
        row += [gap, p]
    return np.concatenate(row, axis=1)


# ------------------------------------------------------------------------------ command
def make_control(
    strength: float,
    keep_background: bool,
    keep_foreground: bool,
    threshold: float | None,
    feather: float | None,
) -> blend.Control:
    """The blend.Control of the command-line options (BadParameter on bad combinations)."""
    if keep_background and keep_foreground:
        raise typer.BadParameter(
            "--keep-background and --keep-foreground exclude each other",
            param_hint="--keep-foreground",
        )
    keep = "background" if keep_background else "foreground" if keep_foreground else None
    if keep is None and (threshold is not None or feather is not None):
        raise typer.BadParameter(
            "--threshold and --feather shape the depth mask: add --keep-background or "
            "--keep-foreground",
            param_hint="--threshold",
        )
    return blend.Control(strength=strength, keep=keep, threshold=threshold, feather=feather)


def mask_rgb(mask) -> np.ndarray:
    """(1, 1, H, W) mask tensor -> (H, W, 3) uint8 gray (white = deblurred, black = kept)."""
    return colorize(mask[0, 0].numpy(), "gray")


def register(app: typer.Typer) -> None:
    @app.command("deblur-image")
    @cli_errors
    def deblur_image(
        inputs: InputsArg,
        output: Annotated[
            Path | None,
            typer.Option(
                "--output",
                "-o",
                help="output file (one input) or folder; - writes one image to stdout "
                "(default: NAME_sharp.EXT beside each input)",
                show_default=False,
            ),
        ] = None,
        weights: WeightsOpt = None,
        depth_model: DepthModelOpt = None,
        device: DeviceOpt = "auto",
        precision: PrecisionOpt = Precision.auto,
        tile: TileOpt = None,
        tile_overlap: TileOverlapOpt = DEFAULT_OVERLAP,
        fmt: FormatOpt = None,
        quality: QualityOpt = None,
        suffix: Annotated[
            str | None,
            typer.Option(
                "--suffix",
                help="added to each output's name: beside the input (default _sharp) or in "
                "an -o folder (default none)",
                show_default=False,
            ),
        ] = None,
        save_depth: Annotated[
            bool, typer.Option("--save-depth", help="also write <name>.depth.png (16-bit D_r)")
        ] = False,
        compare: Annotated[
            bool,
            typer.Option(
                "--compare",
                help="also write <name>.compare: blurred | depth | sharp (| mask before sharp "
                "when a depth mask is used)",
            ),
        ] = False,
        strength: StrengthOpt = 1.0,
        keep_background: KeepBackgroundOpt = False,
        keep_foreground: KeepForegroundOpt = False,
        threshold: ThresholdOpt = None,
        feather: FeatherOpt = None,
        max_pixels: MaxPixelsOpt = io.DEFAULT_MAX_PIXELS,
        backend: BackendOpt = Backend.torch,
        shard: ShardOpt = None,
        overwrite: OverwriteOpt = False,
        as_json: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        """Deblur photos: files, folders (recursive) and globs.

        One input file -> OUT is the output file; otherwise OUT is a folder mirroring the
        inputs; without -o each output is NAME_sharp.EXT beside its input. `-` as the input
        reads one image from stdin, `-o -` writes it to stdout. 8/16-bit, grayscale, alpha,
        EXIF orientation, EXIF and ICC are kept where the output format allows.
        """
        control = make_control(strength, keep_background, keep_foreground, threshold, feather)
        part = parse_shard(shard)
        run_on_local_gpus(device, part)  # --device cuda:all: one worker per GPU, then exit
        stack = ExitStack()  # temporary files of - (stdin/stdout), removed when dgn exits
        atexit.register(stack.close)
        inputs, output, to_stdout = _stdio(
            inputs, output, fmt, as_json, save_depth or compare, stack
        )
        overwrite = overwrite or to_stdout
        ext = _output_ext(inputs, output, fmt) if output is not None else _fmt_ext(fmt)
        if suffix is None:
            suffix = "_sharp" if output is None else ""
        batch = select_shard(plan_batch(inputs, output, ext=ext, stem_suffix=suffix), part)
        engine = build_engine(
            weights=weights,
            depth_model=depth_model,
            device=device,
            precision=precision,
            tile=tile,
            tile_overlap=tile_overlap,
            quiet=quiet,
            backend=backend,
        )

        def extras(dst: Path) -> list[Path]:
            out = []
            if save_depth and engine.uses_depth:
                out.append(dst.with_name(dst.stem + ".depth.png"))
            if compare:
                out.append(dst.with_name(dst.stem + ".compare" + dst.suffix))
            return out

        def process(job: Job, prog: BatchProgress) -> dict[str, Any]:
            pic = io.read_image(job.src, max_pixels=max_pixels)
            x = io.to_tensor(pic.rgb)
            restored, depth, refined = engine.deblur(x, progress=prog.on_tile)
            guide = refined if refined is not None else depth
            restored, mask = engine.control(x, restored, guide, control)
            del x
            sharp = io.from_tensor(restored, pic.rgb.dtype, gray=pic.gray)
            del restored
            notes = list(pic.notes)
            if job.wants(job.dst):
                notes += io.write_image(
                    job.dst, sharp, alpha=pic.alpha, exif=pic.exif, icc=pic.icc, quality=quality
                )
            result: dict[str, Any] = {
                "width": pic.width,
                "height": pic.height,
                "bits": pic.bits,
                "gray": pic.gray,
                "alpha": pic.alpha is not None,
                "orientation": pic.orientation,
                "tiles": engine.last_run.tiles,
                "tile": engine.last_run.tile,
                "oom_retries": engine.last_run.oom_retries,
                "fp32_recomputed": engine.last_run.fp32_recomputed,
                "notes": notes,
            }
            if control.active:
                result["control"] = control.describe()
            if mask is not None:
                result["mask_mean"] = round(float(mask.mean()), 4)  # share deblurred
            paths = iter(extras(job.dst))
            if save_depth and guide is not None:
                result["depth"] = str(path := next(paths))
                if job.wants(path):
                    write_depth16(path, guide)
            if compare:
                result["compare"] = str(path := next(paths))
            if compare and job.wants(path):
                d = guide[0, 0].numpy() if guide is not None else np.zeros(sharp.shape[:2])
                rgb_sharp = sharp if sharp.ndim == 3 else np.repeat(sharp[:, :, None], 3, 2)
                m = mask_rgb(mask) if mask is not None else None
                panel = compare_panel(pic.rgb, colorize(d), rgb_sharp, m)
                io.write_image(path, panel, quality=quality, icc=pic.icc)
            return result

        records = run_batch(batch, process, overwrite=overwrite, quiet=quiet, extra_outputs=extras)
        finish("deblur-image", engine, batch, records, as_json, quiet)
        if to_stdout:
            sys.stdout.buffer.write(batch.jobs[0].dst.read_bytes())
            sys.stdout.flush()


def _fmt_ext(fmt: ImageFormat | None) -> str | None:
    return io.FORMATS[fmt.value] if fmt is not None else None


def _stdio(inputs, output, fmt, as_json, extras, stack: ExitStack):
    """`-` as the input: stdin's bytes saved to a temporary file; `-o -`: the output is
    written to a temporary file and then to stdout. -> (inputs, output, to_stdout)."""
    from_stdin, to_stdout = inputs == ["-"], output is not None and str(output) == "-"
    if "-" in inputs and not from_stdin:
        raise typer.BadParameter("- (stdin) must be the only input", param_hint="INPUTS")
    if not (from_stdin or to_stdout):
        return inputs, output, False
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dgn-stdio-")))
    if to_stdout and as_json:
        raise typer.BadParameter("--json and -o - would both write to stdout", param_hint="--json")
    if to_stdout and extras:
        raise typer.BadParameter("-o - writes one image; --save-depth/--compare need a file")
    if from_stdin:
        data = sys.stdin.buffer.read()
        if not data:
            raise OutputError(
                "-: nothing on stdin; pipe an image in: dgn deblur-image - -o - < a.jpg"
            )
        kind = _sniff(data)
        src = tmp / f"stdin{kind}"
        src.write_bytes(data)
        inputs = [str(src)]
        if output is None and not to_stdout:
            raise typer.BadParameter("reading stdin: give -o FILE or -o -", param_hint="-o")
    if to_stdout:
        if not Path(inputs[0]).is_file():
            raise typer.BadParameter("-o - writes one image: give one input file", param_hint="-o")
        ext = _fmt_ext(fmt) or (Path(inputs[0]).suffix.lower() or ".png")
        output = tmp / f"stdout{ext}"
    return inputs, output, to_stdout


def _sniff(data: bytes) -> str:
    """The extension of an image given as bytes (for the output format of `-o -`)."""
    for magic, ext in (
        (b"\x89PNG", ".png"),
        (b"\xff\xd8", ".jpg"),
        (b"BM", ".bmp"),
        (b"II*\x00", ".tif"),
        (b"MM\x00*", ".tif"),
    ):
        if data.startswith(magic):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return ".png"


def _output_ext(inputs: list[str], output: Path, fmt: ImageFormat | None) -> str | None:
    """The extension every output gets (None = each input's own)."""
    single = len(inputs) == 1 and Path(inputs[0]).expanduser().is_file()
    if single and output.suffix and not output.is_dir():
        ext = io.output_ext(output)
        if fmt is not None and io.FORMATS[fmt.value] != io.FORMATS.get(ext.lstrip("."), ext):
            raise typer.BadParameter(
                f"--format {fmt.value} disagrees with the output name {output.name}"
            )
        return ext
    return io.FORMATS[fmt.value] if fmt is not None else None
