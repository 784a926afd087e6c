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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dgn_cli.benchmark import quality as bq
from dgn_cli.benchmark import report as report_fmt
from dgn_cli.benchmark import speed as bench
from dgn_cli.commands.common import (
    DepthModelOpt,
    DeviceOpt,
    JsonOpt,
    Precision,
    PrecisionOpt,
    QuietOpt,
    WeightsOpt,
    cli_errors,
    err_console,
    out_console,
    print_json,
)
from dgn_cli.commands.image import TileOpt, TileOverlapOpt
from dgn_cli.engine import DEFAULT_DGN, DEFAULT_OVERLAP, RANDOM, Engine, EngineConfig
from dgn_cli.errors import CheckpointError

RANDOM_NOTE = (
    "--weights random: seeded RANDOM, untrained networks (default DGN config, default small "
    "depth net unless --depth-model): timing, sizes and GMACs are those of the real models, "
    "quality numbers mean nothing"
)


class Dataset(StrEnum):
    gopro = "gopro"
    synth = "synth"


def _engine(
    weights: str | None,
    depth_model: str | None,
    device: str,
    precision: str,
    tile: int | None,
    tile_overlap: int,
    seed: int,
) -> Engine:
    cfg = EngineConfig(
        weights=weights,
        depth_model=depth_model,
        device=device,
        precision=precision,
        tile=tile,
        tile_overlap=tile_overlap,
        seed=seed,
    )
    try:
        return Engine(cfg)
    except CheckpointError as e:
        if weights is None or weights == DEFAULT_DGN["image"]:
            raise CheckpointError(
                f"the shipped DGN weights ({cfg.weights!r}) are missing: {e}. Timing, sizes and "
                "GMACs do not depend on the weights: `dgn benchmark --weights random` measures "
                "a random default-config DGN"
            ) from None
        if weights == RANDOM or depth_model is None:
            raise CheckpointError(
                f"{e}. Pass a depth model you have with --depth-model (a registry name or a file)"
            ) from None
        raise


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not enabled,
    )


GOPRO_HINT = (
    "no quality numbers: --dataset gopro needs --data GOPRO_Large/ (the GoPro deblurring "
    "dataset of Nah et al., CVPR 2017, from https://seungjunnah.github.io/Datasets/gopro; "
    "layout GOPRO_Large/test/SEQ/{blur,sharp}/*.png), or use --dataset synth "
    "(made offline by dgn data synth)"
)


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
        title = f"quality: {ds['kind']} {ds['root']} ({ds['split']}, {report['images']} images)"
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
        per_image: Annotated[
            bool, typer.Option("--per-image", help="also print PSNR/SSIM of every image")
        ] = False,
        weights: WeightsOpt = None,
        depth_model: DepthModelOpt = None,
        device: DeviceOpt = "auto",
        precision: PrecisionOpt = Precision.auto,
        tile: TileOpt = None,
        tile_overlap: TileOverlapOpt = DEFAULT_OVERLAP,
        seed: Annotated[
            int, typer.Option("--seed", help="seed of the random weights and the timing input")
        ] = 0,
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
        # Everything the quality part needs is checked here, before minutes of timing.
        quality_hint = None
        if dataset is Dataset.gopro and data_root is None:
            quality_hint = GOPRO_HINT
            dataset = None
        elif dataset is not None:
            bq.open_dataset(dataset.value, data_root, split=split)  # a clear error, now
        width, height = bench.parse_size(size)
        timing_cfg = bench.TimingConfig(width, height, runs, warmup, seed)
        show = not (quiet or as_json or markdown)
        if weights == RANDOM and not quiet:
            err_console.print(
                "[bold yellow on red] WARNING [/] [bold yellow]--weights random: seeded RANDOM, "
                "UNTRAINED networks; timing and sizes are real, quality numbers are not.[/]"
            )
        engine = _engine(weights, depth_model, device, str(precision), tile, tile_overlap, seed)
        info = engine.info()
        dgn_cfg = engine.dgn.config
        counts = bench.parameter_counts_all(engine)
        report: dict = {
            **bench.environment(engine),
            "seed": seed,
            "weights": info["weights"],
            "depth_model": engine.depth_estimator.name if engine.uses_depth else None,
            "random_weights": info["random_weights"],
            "variant": dgn_cfg.variant,
            "frames": dgn_cfg.frames,
            "size": [width, height],
            "tile": tile,
            "tile_overlap": tile_overlap,
            "tile_used": None,
            "tiles": None,
            "params": counts,
            "params_m": bench.params_in_millions(counts),
            "gmacs": bench.gmacs_per_frame(engine, width, height),
            "timing_ms": None,
            "runs": None,
            "warmup": None,
            "peak_memory_mb": None,
            "peak_memory_kind": None,
            "dataset": None,
            "quality": None,
            "notes": [RANDOM_NOTE] if info["random_weights"] else [],
        }
        if not (params_only or no_timing):
            with _progress(show) as prog:
                task = prog.add_task(f"timing {width}x{height}", total=warmup + runs)
                timed = bench.time_pipeline(
                    engine, timing_cfg, lambda d, t: prog.update(task, completed=d)
                )
            report.update(
                timing_ms=timed["timing_ms"],
                runs=timed["runs"],
                warmup=timed["warmup"],
                peak_memory_mb=timed["peak_memory_mb"],
                peak_memory_kind=timed["peak_memory_kind"],
                tile_used=timed["tile"],
                tiles=timed["tiles"],
            )
            if timed["fp32_recomputed_tiles"]:
                report["notes"].append(
                    f"{timed['fp32_recomputed_tiles']} tile(s) gave NaN/Inf in "
                    f"{engine.precision} and were recomputed in fp32 (included in the times)"
                )
            if not timed["peak_memory_reset"]:
                report["notes"].append("peak memory is the process's lifetime peak RSS")
        if dataset is not None:
            report.update(_evaluate(engine, dataset, data_root, split, limit, ablation,
                                    baseline_weights, show))  # fmt: skip
        if quality_hint:
            report["notes"].append(quality_hint)
        if as_json:
            print_json(_jsonable(report))
        elif markdown:
            typer.echo(report_fmt.to_markdown(report), nl=False)
        elif not quiet:
            _print_human(report, per_image)
        if quality_hint and not quiet and (as_json or markdown):
            err_console.print(f"[yellow]note:[/] {quality_hint}", soft_wrap=True)


def _evaluate(engine, kind, root, split, limit, ablation, baseline_weights, show) -> dict:
    ds = bq.open_dataset(kind.value, root, frames=engine.dgn.config.frames, split=split)
    indices = bq.select_indices(len(ds), limit)
    baseline, note = None, None
    if engine.dgn.config.uses_depth and ablation:
        if baseline_weights.lower() == "none":
            note = "--baseline-weights none"
        else:
            baseline, note = bq.baseline_engine(engine, baseline_weights, engine.dgn.config.frames)
    with _progress(show) as prog:
        task = prog.add_task(f"evaluating {kind.value}", total=len(indices))
        result = bq.evaluate(
            engine,
            ds,
            indices,
            ablation=ablation,
            baseline=baseline,
            baseline_note=note,
            progress=lambda d, t: prog.update(task, completed=d),
        )
    root_text = str(root) if root is not None else str(bq.DEFAULT_SYNTH_ROOT)
    result["dataset"] = {
        "kind": kind.value,
        "root": root_text,
        "split": split,
        "layout": ds.layout,
        "size": len(ds),
        "limit": limit,
        "indices": indices,
        "reference_depth": result["reference_depth"],
        "metrics": report_fmt.METRICS_NOTE,
        "thirds": report_fmt.THIRDS_NOTE,
    }
    return result


def _jsonable(value):
    """inf / NaN (PSNR of identical images) -> null, so the output is strict JSON."""
    if isinstance(value, float):
        return bq.finite_or_none(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
