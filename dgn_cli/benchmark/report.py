"""The tables of a `dgn benchmark` report: one set of rows, rendered as Markdown here and as
rich tables by the CLI. Pure functions of the report dict (the --json document)."""

from __future__ import annotations

from dgn_cli.benchmark.speed import COMPONENTS

COMPONENT_LABELS = {
    "depth_estimator": "depth estimator",
    "refinement": "refinement branch (G_D)",
    "deblurring": "deblurring branch (G_B)",
    "other": "other (transfers, padding, blending)",
}
METRICS_NOTE = (
    "PSNR/SSIM on RGB 0-255, outputs rounded to 8 bit; SSIM: 11x11 Gaussian window "
    "(sigma 1.5), K1 0.01, K2 0.03, data range 255, per RGB channel (valid region), averaged; "
    "every number is computed per image, then averaged over images"
)
THIRDS_NOTE = (
    "near / middle / far: pixels whose reference depth (normalised inverse depth, 1 = nearest) "
    "is >= 2/3, in [1/3, 2/3), < 1/3"
)


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def speed_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the size / compute / timing table."""
    timing = report.get("timing_ms") or {}
    headers = ["component", "params (M)", "GMACs/frame"]
    if timing:
        headers += ["median (ms)", "p90 (ms)"]
    rows = []
    for name in (*COMPONENTS, "other"):
        if name == "other" and not timing:
            continue
        row = [COMPONENT_LABELS[name]]
        row.append(_num(report["params_m"].get(name), ".3f") if name != "other" else "")
        row.append(_num(report["gmacs"].get(name), ".1f") if name != "other" else "")
        if timing:
            t = timing.get(name)
            row += [_num(t and t["median"], ".1f"), _num(t and t["p90"], ".1f")]
        rows.append(row)
    total = ["end to end (total)", f"{report['params_m']['total']:.3f}"]
    total.append(f"{report['gmacs']['total']:.1f}")
    if timing:
        e2e = timing["end_to_end"]
        total += [f"{e2e['median']:.1f}", f"{e2e['p90']:.1f}"]
    rows.append(total)
    return headers, rows


def quality_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the PSNR / SSIM / depth-thirds table (blurry input first)."""
    headers = ["method", "PSNR (dB)", "SSIM", "PSNR near", "PSNR middle", "PSNR far", "images"]
    rows = []
    for q in report.get("quality") or []:
        rows.append(
            [
                q["name"],
                _num(q["psnr"], ".2f"),
                _num(q["ssim"], ".4f"),
                _num(q.get("psnr_near"), ".2f"),
                _num(q.get("psnr_middle"), ".2f"),
                _num(q.get("psnr_far"), ".2f"),
                str(q.get("images", "")),
            ]
        )
    return headers, rows


def depth_error_line(report: dict) -> str | None:
    err = report.get("depth_error")
    if not err:
        return None
    return (
        f"depth error against the reference ({report.get('reference_depth')}): "
        f"initial D_b MAE {err['initial_mae']:.4f} (RMSE {err['initial_rmse']:.4f}), "
        f"refined D_r MAE {err['refined_mae']:.4f} (RMSE {err['refined_rmse']:.4f}); "
        f"the best per-frame constant: RMSE {err['constant_rmse']:.4f}"
        + (
            f"; Pearson correlation initial {err['initial_pearson']:+.2f}, "
            f"refined {err['refined_pearson']:+.2f}"
            if "initial_pearson" in err  # reports written before it had no correlation
            else ""
        )
    )


def setup_line(report: dict) -> str:
    """One line saying what ran: device, precision, size, tiles, weights, versions."""
    w, h = report["size"]
    tile = report.get("tile")
    tile_text = {None: "auto", 0: "whole image"}.get(tile, f"{tile} px")
    used = report.get("tile_used")
    if used is not None:
        tile_text += f" (used: {'whole image' if used == 0 else f'{used} px'}"
        tile_text += f", {report.get('tiles')} tile(s))"
    parts = [
        f"{report['device_name']}",
        f"precision {report['precision']}",
        f"{w}x{h}",
        f"tiles {tile_text}, overlap {report['tile_overlap']} px",
        *(
            [f"self-ensemble of {report['self_ensemble']} passes"]
            if report.get("self_ensemble", 1) > 1
            else []
        ),
        *(
            [f"align {report.get('align')}", f"video depth {report.get('video_depth')}"]
            if report.get("frames", 1) > 1
            else []
        ),
        f"weights {report['weights']}" + (" (RANDOM)" if report.get("random_weights") else ""),
        f"depth {report.get('depth_model')}",
        f"torch {report['torch']}",
        f"commit {(report.get('commit') or 'unknown')[:12]}",
    ]
    if report.get("timing_ms"):
        parts.append(f"{report['runs']} runs after {report['warmup']} warm-up")
        parts.append(
            f"peak memory {report['peak_memory_mb']:.0f} MiB ({report['peak_memory_kind']})"
        )
    return ", ".join(parts)


def inputs_note(dataset: dict) -> str:
    """ ", inputs JPEG qN" when the report's inputs were compressed first (`--jpeg N`), else ""."""
    quality = dataset.get("input_jpeg_quality")
    return f", inputs JPEG q{quality}" if quality else ""


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def to_markdown(report: dict) -> str:
    """The report as Markdown (for README / BENCHMARKS.md)."""
    parts = [setup_line(report) + ".", "", _md_table(*speed_rows(report))]
    if report.get("quality"):
        ds = report["dataset"]
        parts += [
            "",
            f"Quality on {ds['kind']} `{ds['root']}` split {ds['split']}, "
            f"{report['images']} images{inputs_note(ds)}. {METRICS_NOTE}; {THIRDS_NOTE}.",
            "",
            _md_table(*quality_rows(report)),
        ]
        line = depth_error_line(report)
        if line:
            parts += ["", line + "."]
    for s in report.get("skipped") or []:
        parts += ["", f"Skipped {s['name']}: {s['reason']}"]
    for note in report.get("notes") or []:
        parts += ["", f"Note: {note}"]
    return "\n".join(parts) + "\n"
