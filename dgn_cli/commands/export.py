"""`dgn export`: write a DGN (and its depth estimator) as ONNX graphs for other runtimes.

    dgn export --format onnx dgn-image -o dgn-image.onnx     # + dgn-image.depth.onnx
    dgn export --format onnx dgn-video -o dgn-video.onnx --opset 18

See dgn_cli.onnx_export for the graphs' inputs, outputs and metadata.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from dgn_cli.commands.common import (
    DepthModelOpt,
    JsonOpt,
    OverwriteOpt,
    QuietOpt,
    cli_errors,
    err_console,
    print_json,
)
from dgn_cli.errors import OutputError


class ExportFormat(StrEnum):
    onnx = "onnx"


def register(app: typer.Typer) -> None:
    @app.command("export")
    @cli_errors
    def export(
        name: Annotated[
            str, typer.Argument(help="DGN checkpoint: a registry name (dgn-image) or a path")
        ],
        output: Annotated[
            Path,
            typer.Option(
                "--output",
                "-o",
                help="the DGN graph (.onnx); the depth graph goes beside it as NAME.depth.onnx",
            ),  # fmt: skip
        ],
        fmt: Annotated[
            ExportFormat, typer.Option("--format", help="export format")
        ] = ExportFormat.onnx,
        depth_model: DepthModelOpt = None,
        opset: Annotated[int, typer.Option("--opset", min=13, help="ONNX opset")] = 17,
        overwrite: OverwriteOpt = False,
        as_json: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        """Export a DGN and its depth estimator as ONNX graphs (dynamic height and width)."""
        from dgn_cli import checkpoints, onnx_export

        if output.suffix.lower() != ".onnx":
            raise typer.BadParameter("the output must end in .onnx", param_hint="-o")
        depth_file = onnx_export.depth_path_for(output)
        for target in (output, depth_file):
            if target.exists() and not overwrite:
                raise OutputError(f"{target} exists; use --overwrite to replace it")
        dgn = checkpoints.load_dgn(name)
        depth = None
        if dgn.config.uses_depth:
            depth = checkpoints.load_depth_estimator(depth_model or checkpoints.DEFAULT_DEPTH)
        path = checkpoints.resolve_checkpoint(name, kind="dgn")
        source = {"source_weights": name, "source_sha256": checkpoints.sha256_file(path)}
        output.parent.mkdir(parents=True, exist_ok=True)
        written = onnx_export.export_onnx(dgn, depth, output, opset=opset, source=source)
        if as_json:
            print_json(
                {
                    "command": "export",
                    "format": fmt.value,
                    "files": {k: str(v) for k, v in written.items()},
                    "metadata": onnx_export.describe(output),
                }
            )
        if not quiet:
            files = ", ".join(str(p) for p in written.values())
            err_console.print(f"wrote {files} (ONNX opset {opset}, dynamic height and width)")
