"""`dgn deblur-image`: options, the per-photo work, and output to stdout/stdin (`-`).

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
from contextlib import ExitStack
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from dgn_cli import io
from dgn_cli.batch import BatchListener, Job, plan_batch, run_batch, select_shard
from dgn_cli.commands.common import (
    Backend,
    BackendOpt,
    EngineOptions,
    InputsArg,
    JsonOpt,
    MaxPixelsOpt,
    OverwriteOpt,
    QuietOpt,
    cli_errors,
    engine_options,
    finish,
    open_engine,
    run_on_local_gpus,
)
from dgn_cli.commands.deblur_options import (
    FeatherOpt,
    KeepBackgroundOpt,
    KeepForegroundOpt,
    ShardOpt,
    StrengthOpt,
    ThresholdOpt,
    make_control,
)
from dgn_cli.commands.progress import BatchProgress
from dgn_cli.errors import OutputError
from dgn_cli.shard import parse_shard
from dgn_cli.visualize import colorize, compare_panel, mask_rgb


class ImageFormat(StrEnum):
    png = "png"
    jpg = "jpg"
    tiff = "tiff"
    webp = "webp"
    bmp = "bmp"


FormatOpt = Annotated[
    ImageFormat | None,
    typer.Option("--format", help="output format (default: OUT's extension, else the input's)"),
]
QualityOpt = Annotated[
    int | None,
    typer.Option("--quality", min=1, max=100, help="JPEG/WebP quality (default 95)"),
]


# ------------------------------------------------------------------------------ command
def register(app: typer.Typer) -> None:
    @app.command("deblur-image")
    @cli_errors
    @engine_options
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
        engine_opts: EngineOptions = None,  # --weights, --device, --tile, ... (common.py)
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
        run_on_local_gpus(engine_opts.device, part)  # --device cuda:all: a worker per GPU
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
        engine = open_engine(engine_opts.config(), quiet=quiet, backend=backend)

        def extras(dst: Path) -> list[Path]:
            out = []
            if save_depth and engine.uses_depth:
                out.append(dst.with_name(dst.stem + ".depth.png"))
            if compare:
                out.append(dst.with_name(dst.stem + ".compare" + dst.suffix))
            return out

        def process(job: Job, prog: BatchListener) -> dict[str, Any]:
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
                    io.write_depth16(path, guide)
            if compare:
                result["compare"] = str(path := next(paths))
            if compare and job.wants(path):
                d = guide[0, 0].numpy() if guide is not None else np.zeros(sharp.shape[:2])
                rgb_sharp = sharp if sharp.ndim == 3 else np.repeat(sharp[:, :, None], 3, 2)
                m = mask_rgb(mask) if mask is not None else None
                panel = compare_panel(pic.rgb, colorize(d), rgb_sharp, m)
                io.write_image(path, panel, quality=quality, icc=pic.icc)
            return result

        with BatchProgress(len(batch.jobs), quiet) as prog:
            records = run_batch(batch, process, prog, overwrite=overwrite, extra_outputs=extras)
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
