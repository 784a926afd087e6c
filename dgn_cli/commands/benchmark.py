"""`dgn benchmark`: speed, size and compute (Table VIII), PSNR/SSIM on a test split and the
depth ablation (Table IX).

    dgn benchmark --weights random --device cpu --runs 3          # timing + sizes + GMACs
    dgn benchmark --params-only                                    # sizes and GMACs only
    dgn benchmark --dataset gopro --data GOPRO_Large/ --limit 100  # + quality and ablation
    dgn benchmark --dataset synth --no-timing --json > synth.json
    dgn benchmark --markdown >> BENCHMARKS.md

Human output (rich tables) goes to stderr; --json writes one JSON document and --markdown
Markdown tables to stdout. Definitions: dgn_cli/benchmark/speed.py (timing, memory, GMACs) and
dgn_cli/benchmark/quality.py (metrics, ablation rows, depth thirds).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dgn_cli.benchmark import report as report_fmt
from dgn_cli.benchmark.run import BenchmarkConfig, jsonable, run
from dgn_cli.commands.common import (
    AlignMode,
    AlignOpt,
    EngineOptions,
    JsonOpt,
    QuietOpt,
    VideoDepth,
    VideoDepthOpt,
    cli_errors,
    engine_options,
    err_console,
    open_engine,
    out_console,
    parse_size,
    print_json,
)
from dgn_cli.commands.progress import progress_bar
from dgn_cli.engine import DEFAULT_DGN, RANDOM, Engine, EngineConfig
from dgn_cli.errors import CheckpointError

RANDOM_WARNING = (
    "[bold yellow on red] WARNING [/] [bold yellow]--weights random: seeded RANDOM, "
    "UNTRAINED networks; timing and sizes are real, quality numbers are not.[/]"
)


class Dataset(StrEnum):
    gopro = "gopro"
    synth = "synth"


def _engine(cfg: EngineConfig, quiet: bool) -> Engine:
    """open_engine, with what to do when a checkpoint is missing."""
    try:
        return open_engine(cfg, quiet=True, random_warning="" if quiet else RANDOM_WARNING)
    except CheckpointError as e:
        if cfg.weights == DEFAULT_DGN["image"]:
            raise CheckpointError(
                f"the shipped DGN weights ({cfg.weights!r}) are missing: {e}. Timing, sizes and "
                "GMACs do not depend on the weights: `dgn benchmark --weights random` measures "
                "a random default-config DGN"
            ) from None
        if cfg.weights == RANDOM or cfg.depth_model is None:
            raise CheckpointError(
                f"{e}. Pass a depth model you have with --depth-model (a registry name or a file)"
            ) from None
        raise


def _rich_table(title: str, headers: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
    for r in rows:
        table.add_row(*r)
    return table


def _print_human(report: dict, per_image: bool) -> None:
    """The results (setup line and tables) on stdout; skips and notes on stderr."""
    out = out_console()
    out.print(f"[dim]{report_fmt.setup_line(report)}[/]", soft_wrap=True)
    out.print(_rich_table("size, compute and time per frame", *report_fmt.speed_rows(report)))
    if report.get("quality"):
        ds = report["dataset"]
        title = (
            f"quality: {ds['kind']} {ds['root']} ({ds['split']}, {report['images']} images)"
            f"{report_fmt.inputs_note(ds)}"
        )
        out.print(_rich_table(title, *report_fmt.quality_rows(report)))
        out.print(f"[dim]{report_fmt.METRICS_NOTE}; {report_fmt.THIRDS_NOTE}[/]")
        line = report_fmt.depth_error_line(report)
        if line:
            out.print(line, soft_wrap=True)
    if per_image and report.get("per_image"):
        names = [q["name"] for q in report["quality"]]
        table = Table(title="PSNR / SSIM per image", title_justify="left")
        table.add_column("image", no_wrap=True)
        for n in names:
            table.add_column(n, justify="right", no_wrap=True)
        for p in report["per_image"]:
            cells = []
            for n in names:
                s = p["rows"].get(n)
                cells.append("-" if s is None else f"{s['psnr']:.2f} / {s['ssim']:.4f}")
            table.add_row(p["name"], *cells)
        out.print(table)
    for s in report.get("skipped") or []:
        err_console.print(f"[yellow]skipped[/] {s['name']}: {s['reason']}", soft_wrap=True)
    for note in report.get("notes") or []:
        err_console.print(f"[yellow]note:[/] {note}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    @app.command("benchmark")
    @cli_errors
    @engine_options
    def benchmark(
        size: Annotated[
            str, typer.Option("--size", help="frame size for timing and GMACs, WIDTHxHEIGHT")
        ] = "1280x720",
        runs: Annotated[int, typer.Option("--runs", min=1, help="timed runs")] = 5,
        warmup: Annotated[
            int, typer.Option("--warmup", min=0, help="untimed runs before timing")
        ] = 2,
        params_only: Annotated[
            bool,
            typer.Option("--params-only", help="print parameter counts and GMACs, no timing"),
        ] = False,
        no_timing: Annotated[
            bool, typer.Option("--no-timing", help="skip timing (e.g. for a quality-only run)")
        ] = False,
        dataset: Annotated[
            Dataset | None,
            typer.Option(
                "--dataset", help="evaluate PSNR/SSIM and the depth ablation on gopro|synth"
            ),
        ] = None,
        data_root: Annotated[
            Path | None,
            typer.Option("--data", help="dataset folder (GOPRO layout; synth default: data/synth)"),
        ] = None,
        split: Annotated[str, typer.Option("--split", help="split to evaluate")] = "test",
        limit: Annotated[
            int | None,
            typer.Option("--limit", min=1, help="evaluate N images spread evenly over the split"),
        ] = None,
        ablation: Annotated[
            bool,
            typer.Option(
                "--ablation/--no-ablation",
                help="also evaluate the baseline, initial- and reference-depth rows",
            ),
        ] = True,
        baseline_weights: Annotated[
            str,
            typer.Option(
                "--baseline-weights",
                help="no-depth baseline checkpoint (registry name or path; 'none' skips it)",
            ),
        ] = "dgn-baseline",
        jpeg: Annotated[
            int | None,
            typer.Option(
                "--jpeg",
                min=1,
                max=100,
                help="compress the blurred inputs as JPEG of this quality first (real inputs are "
                "compressed: how much of the gain survives)",
            ),
        ] = None,
        per_image: Annotated[
            bool, typer.Option("--per-image", help="also print PSNR/SSIM of every image")
        ] = False,
        engine_opts: EngineOptions = None,  # --weights, --device, --tile, ... (common.py)
        seed: Annotated[
            int, typer.Option("--seed", help="seed of the random weights and the timing input")
        ] = 0,
        align: AlignOpt = AlignMode.auto,  # as deblur-video; off: as before stretch 8
        video_depth: VideoDepthOpt = VideoDepth.auto,  # as deblur-video
        as_json: JsonOpt = False,
        markdown: Annotated[
            bool, typer.Option("--markdown", help="print Markdown tables to stdout")
        ] = False,
        quiet: QuietOpt = False,
    ) -> None:
        """Time the model (end to end and per component), count its parameters and GMACs, and
        evaluate PSNR/SSIM with the depth ablation on a GOPRO-layout or the synthetic test split."""
        if as_json and markdown:
            raise typer.BadParameter("--json and --markdown both write to stdout; choose one")
        if params_only and dataset is not None:
            raise typer.BadParameter("--params-only prints sizes only; drop it to use --dataset")
        if data_root is not None and dataset is None:
            raise typer.BadParameter("--data needs --dataset gopro (or synth)")
        width, height = parse_size(size, minimum=16)
        cfg = BenchmarkConfig(
            width=width,
            height=height,
            runs=runs,
            warmup=warmup,
            seed=seed,
            timing=not (params_only or no_timing),
            dataset=dataset.value if dataset is not None else None,
            data_root=data_root,
            split=split,
            limit=limit,
            ablation=ablation,
            baseline_weights=baseline_weights,
            jpeg=jpeg,
        )
        cfg.check_dataset()  # everything the quality part needs, before minutes of timing
        show = not (quiet or as_json or markdown)
        engine = _engine(
            engine_opts.config(seed=seed, align=str(align), video_depth=str(video_depth)), quiet
        )
        labels = {"timing": f"timing {width}x{height}", "evaluating": f"evaluating {cfg.dataset}"}
        with progress_bar(quiet=not show, eta=False) as prog:
            tasks: dict[str, int] = {}

            def progress(stage: str, done: int, total: int | None) -> None:
                if stage not in tasks:
                    tasks[stage] = prog.add_task(labels[stage], total=total)
                prog.update(tasks[stage], completed=done, total=total)

            report = run(engine, cfg, progress)
        if as_json:
            print_json(jsonable(report))
        elif markdown:
            typer.echo(report_fmt.to_markdown(report), nl=False)
        elif not quiet:
            _print_human(report, per_image)
        if cfg.quality_hint and not quiet and (as_json or markdown):
            err_console.print(f"[yellow]note:[/] {cfg.quality_hint}", soft_wrap=True)
