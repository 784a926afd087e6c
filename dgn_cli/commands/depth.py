"""`dgn depth`: the depth map of photos, for people and for programs.

    dgn depth photo.jpg -o depth.png               # depth.png + depth.color.png
    dgn depth shoot/ -o depths/ --refined --colormap inferno

For each input it writes two PNGs: OUT (16-bit grayscale, the raw normalised inverse depth:
0 = farthest, 65535 = nearest, no colour profile) and `<OUT stem>.color.png` (8-bit, the
same map through an OpenCV colormap, near = the hot end; `--colormap none` skips it). The
default is the depth estimator's initial depth D_b, computed on the whole frame; `--refined`
runs the DGN and writes its refined depth D_r instead (tiled like deblur-image). EXIF
orientation is applied, so the maps are upright like the photo. Batches, skipping, --json
and errors work as in `dgn deblur-image`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from dgn_cli import io
from dgn_cli.batch import BatchListener, Job, plan_batch, run_batch
from dgn_cli.commands.common import (
    EngineOptions,
    InputsArg,
    JsonOpt,
    MaxPixelsOpt,
    OutputOpt,
    OverwriteOpt,
    QuietOpt,
    cli_errors,
    engine_options,
    finish,
    open_engine,
)
from dgn_cli.commands.progress import BatchProgress
from dgn_cli.errors import DgnError
from dgn_cli.visualize import COLORMAPS, colorize

Colormap = StrEnum("Colormap", {n: n for n in ["none", "gray", *sorted(COLORMAPS)]})


class DepthFormat(StrEnum):
    png = "png"
    tiff = "tiff"


def register(app: typer.Typer) -> None:
    @app.command("depth")
    @cli_errors
    @engine_options
    def depth(
        inputs: InputsArg,
        output: OutputOpt,
        refined: Annotated[
            bool, typer.Option("--refined", help="the DGN's refined depth D_r (runs the DGN)")
        ] = False,
        colormap: Annotated[
            Colormap,
            typer.Option("--colormap", help="colormap of the <name>.color.png ('none': skip it)"),
        ] = Colormap["turbo"],
        engine_opts: EngineOptions = None,  # --weights, --device, --tile, ... (common.py)
        fmt: Annotated[
            DepthFormat | None,
            typer.Option("--format", help="raw map format: png (default) or tiff, 16-bit"),
        ] = None,
        max_pixels: MaxPixelsOpt = io.DEFAULT_MAX_PIXELS,
        overwrite: OverwriteOpt = False,
        as_json: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        """Estimate (or, with --refined, refine) the depth map of photos: a 16-bit PNG of the
        normalised inverse depth (1 = nearest) and a colour-mapped PNG."""
        ext = "." + fmt.value if fmt is not None else ".png"
        single = len(inputs) == 1 and Path(inputs[0]).expanduser().is_file()
        if single and output.suffix and not output.is_dir():
            ext = io.output_ext(output)
            if ext not in io.BITS16:
                raise typer.BadParameter(
                    f"{output.name}: the raw depth map is 16-bit; name it .png or .tiff"
                )
        batch = plan_batch(inputs, output, ext=ext)
        engine = open_engine(engine_opts.config(load_dgn=refined), quiet=quiet)
        if refined and not engine.dgn.config.uses_depth:
            raise DgnError(
                f"--refined: the checkpoint {engine.config.weights!r} is the no-depth baseline; "
                "it has no refined depth"
            )
        cmap = colormap.value

        def extras(dst: Path) -> list[Path]:
            return [] if cmap == "none" else [dst.with_name(dst.stem + ".color.png")]

        def process(job: Job, prog: BatchListener) -> dict[str, Any]:
            x = io.to_tensor(io.read_image(job.src, max_pixels=max_pixels).rgb)
            d = engine.estimate_depth(x)
            if refined:
                _, d = engine.restore(x, d, progress=prog.on_tile)
            del x
            if job.wants(job.dst):
                io.write_depth16(job.dst, d)
            result: dict[str, Any] = {
                "width": d.shape[-1],
                "height": d.shape[-2],
                "depth": "refined" if refined else "initial",
                "min": round(float(d.min()), 6),
                "max": round(float(d.max()), 6),
                "mean": round(float(d.mean()), 6),
            }
            if cmap != "none":
                color = extras(job.dst)[0]
                if job.wants(color):
                    io.write_image(color, colorize(d[0, 0].numpy(), cmap))
                result["color"] = str(color)
            return result

        with BatchProgress(len(batch.jobs), quiet) as prog:
            records = run_batch(batch, process, prog, overwrite=overwrite, extra_outputs=extras)
        finish("depth", engine, batch, records, as_json, quiet)
