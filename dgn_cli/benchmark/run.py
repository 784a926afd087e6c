"""One benchmark run: the report `dgn benchmark` prints, assembled here from speed and quality.

    report = run(engine, BenchmarkConfig(width=1280, height=720, dataset="synth"), progress)

`progress(stage, done, total)` is called with stage "timing" or "evaluating". The report is a
plain dict (the --json document; `jsonable` makes it strict JSON, `report` prints it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dgn_cli.benchmark import quality as bq
from dgn_cli.benchmark import report as report_fmt
from dgn_cli.benchmark import speed
from dgn_cli.engine import Engine

StageProgress = Callable[[str, int, int | None], None]

RANDOM_NOTE = (
    "--weights random: seeded RANDOM, untrained networks (default DGN config, default small "
    "depth net unless --depth-model): timing, sizes and GMACs are those of the real models, "
    "quality numbers mean nothing"
)
GOPRO_HINT = (
    "no quality numbers: --dataset gopro needs --data GOPRO_Large/ (the GoPro deblurring "
    "dataset of Nah et al., CVPR 2017, from https://seungjunnah.github.io/Datasets/gopro; "
    "layout GOPRO_Large/test/SEQ/{blur,sharp}/*.png), or use --dataset synth "
    "(made offline by dgn data synth)"
)


@dataclass
class BenchmarkConfig:
    """What to measure. dataset None: speed and size only; "gopro" without data_root: the
    speed table plus a note on where GOPRO comes from."""

    width: int = speed.DEFAULT_SIZE[0]
    height: int = speed.DEFAULT_SIZE[1]
    runs: int = 5
    warmup: int = 2
    seed: int = 0
    timing: bool = True  # False: --params-only / --no-timing
    dataset: str | None = None  # gopro | synth
    data_root: Path | None = None
    split: str = "test"
    limit: int | None = None
    ablation: bool = True
    baseline_weights: str = "dgn-baseline"  # "none" skips the baseline row
    jpeg: int | None = None  # compress the blurred inputs at this JPEG quality first

    @property
    def quality_hint(self) -> str | None:
        return GOPRO_HINT if self.dataset == "gopro" and self.data_root is None else None

    @property
    def evaluates(self) -> bool:
        return self.dataset is not None and self.quality_hint is None

    def check_dataset(self) -> None:
        """Fail now (a clear error naming the folder) rather than after minutes of timing."""
        if self.evaluates:
            bq.open_dataset(self.dataset, self.data_root, split=self.split)


def run(engine: Engine, cfg: BenchmarkConfig, progress: StageProgress | None = None) -> dict:
    """Measure `engine` as `cfg` says; returns the report dict."""
    report = _setup(engine, cfg)
    if cfg.timing:
        fields, notes = _timing(engine, cfg, progress)
        report.update(fields)
        report["notes"] += notes
    if cfg.evaluates:
        report.update(_evaluate(engine, cfg, progress))
    if cfg.quality_hint:
        report["notes"].append(cfg.quality_hint)
    return report


def _setup(engine: Engine, cfg: BenchmarkConfig) -> dict:
    info = engine.info()
    dgn_cfg = engine.dgn.config
    counts = speed.parameter_counts_all(engine)
    return {
        **speed.environment(engine),
        "seed": cfg.seed,
        "weights": info["weights"],
        "depth_model": engine.depth_estimator.name if engine.uses_depth else None,
        "random_weights": info["random_weights"],
        "variant": dgn_cfg.variant,
        "frames": dgn_cfg.frames,
        "size": [cfg.width, cfg.height],
        "tile": engine.config.tile,
        "tile_overlap": engine.config.tile_overlap,
        "self_ensemble": engine.config.self_ensemble,
        "align": engine.align,
        "video_depth": engine.video_depth,
        "tile_used": None,
        "tiles": None,
        "params": counts,
        "params_m": speed.params_in_millions(counts),
        "gmacs": speed.gmacs_per_frame(engine, cfg.width, cfg.height),
        "timing_ms": None,
        "runs": None,
        "warmup": None,
        "peak_memory_mb": None,
        "peak_memory_kind": None,
        "dataset": None,
        "quality": None,
        "notes": [RANDOM_NOTE] if info["random_weights"] else [],
    }


def _timing(
    engine: Engine, cfg: BenchmarkConfig, progress: StageProgress | None
) -> tuple[dict, list[str]]:
    """The report's timing fields, and the notes they need."""
    timing_cfg = speed.TimingConfig(cfg.width, cfg.height, cfg.runs, cfg.warmup, cfg.seed)
    tick = (lambda d, t: progress("timing", d, t)) if progress else None
    timed = speed.time_pipeline(engine, timing_cfg, tick)
    notes = []
    if timed["fp32_recomputed_tiles"]:
        notes.append(
            f"{timed['fp32_recomputed_tiles']} tile(s) gave NaN/Inf in "
            f"{engine.precision} and were recomputed in fp32 (included in the times)"
        )
    if not timed["peak_memory_reset"]:
        notes.append("peak memory is the process's lifetime peak RSS")
    fields = {
        "timing_ms": timed["timing_ms"],
        "runs": timed["runs"],
        "warmup": timed["warmup"],
        "peak_memory_mb": timed["peak_memory_mb"],
        "peak_memory_kind": timed["peak_memory_kind"],
        "tile_used": timed["tile"],
        "tiles": timed["tiles"],
    }
    return fields, notes


def _evaluate(engine: Engine, cfg: BenchmarkConfig, progress: StageProgress | None) -> dict:
    frames = engine.dgn.config.frames
    ds = bq.open_dataset(cfg.dataset, cfg.data_root, frames=frames, split=cfg.split)
    indices = bq.select_indices(len(ds), cfg.limit)
    baseline, note = None, None
    if engine.dgn.config.uses_depth and cfg.ablation:
        if cfg.baseline_weights.lower() == "none":
            note = "--baseline-weights none"
        else:
            baseline, note = bq.baseline_engine(engine, cfg.baseline_weights, frames)
    tick = (lambda d, t: progress("evaluating", d, t)) if progress else None
    result = bq.evaluate(
        engine,
        ds,
        indices,
        ablation=cfg.ablation,
        baseline=baseline,
        baseline_note=note,
        progress=tick,
        jpeg=cfg.jpeg,
    )
    root = cfg.data_root if cfg.data_root is not None else bq.DEFAULT_SYNTH_ROOT
    result["dataset"] = {
        "kind": cfg.dataset,
        "root": str(root),
        "split": cfg.split,
        "layout": ds.layout,
        "size": len(ds),
        "limit": cfg.limit,
        "indices": indices,
        "input_jpeg_quality": cfg.jpeg,
        "reference_depth": result["reference_depth"],
        "metrics": report_fmt.METRICS_NOTE,
        "thirds": report_fmt.THIRDS_NOTE,
    }
    return result


def jsonable(value):
    """inf / NaN (PSNR of identical images) -> null, so the output is strict JSON."""
    if isinstance(value, float):
        return bq.finite_or_none(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
