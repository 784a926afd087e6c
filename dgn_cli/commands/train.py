"""`dgn train`: the paper's training recipe; resumable, mixed precision, torchrun-ready.

dgn train --data synth --task image --steps 20000 --out runs/image
dgn train --data GOPRO_Large/ --task image --out runs/gopro --export dgn-image
torchrun --nproc-per-node 4 -m dgn_cli train --data GOPRO_Large/ --out runs/gopro
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from dgn_cli import distributed
from dgn_cli import train as training
from dgn_cli.commands.common import (
    DeviceOpt,
    JsonOpt,
    Precision,
    QuietOpt,
    cli_errors,
    err_console,
    parse_size,
    print_json,
)
from dgn_cli.errors import InputError
from dgn_cli.train.config import (
    TASK_RECIPES,
    TASKS,
    RunOptions,
    TrainConfig,
    recipe_config,
)

Task = StrEnum("Task", [(name, name) for name in TASKS])


class Recipe(StrEnum):
    fast = "fast"
    paper = "paper"


class ExportDtype(StrEnum):
    fp32 = "fp32"
    fp16 = "fp16"


# The recipe options are the parameters of `dgn train` named like a TrainConfig field; None
# (not given) keeps the recipe's value. Their defaults live in TrainConfig / RECIPES only.
RECIPE_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))
RUN_FIELDS = frozenset(f.name for f in dataclasses.fields(RunOptions))


def recipe_default(name: str) -> str | bool:
    """--help's default of recipe option `name`: 'fast 192, paper 256', or the one value all
    recipes share; False (nothing shown) when it is unset, off or empty. A task's own value
    (TASK_RECIPES) follows: 'fast 0.001, paper 0.0001; fast --task depth 0.0002'."""
    shown = {r.value: _as_text(name, getattr(recipe_config(r.value), name)) for r in Recipe}
    if len(set(shown.values())) > 1:
        text = ", ".join(f"{recipe} {value}" for recipe, value in shown.items())
    else:
        text = shown[Recipe.fast.value]
    per_task = [
        f"{recipe} --task {task} {_as_text(name, values[name])}"
        for (recipe, task), values in TASK_RECIPES.items()
        if name in values
    ]
    return "; ".join([text, *per_task]) if per_task else text or False


def recipe_option(flag: str, help: str | None = None, field: str | None = None) -> Any:
    """The typer.Option of recipe field `field` (default: named after `flag`); its --help
    default comes from the recipes."""
    return typer.Option(
        flag, help=help, show_default=recipe_default(field or flag[2:].replace("-", "_"))
    )


def _as_text(name: str, value: Any) -> str:
    """A TrainConfig value as the command line writes it ('' for unset, off or empty)."""
    if value is None or value is False or value == {}:
        return ""
    if isinstance(value, tuple):
        return ("x" if name == "frame_size" else ",").join(map(str, value))
    return str(value)


def parse_widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: give comma-separated integers, e.g. 32,64,128"
        ) from None
    if not widths or min(widths) < 1:
        raise typer.BadParameter(f"{text!r}: widths must be positive")
    return widths


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs (VALUE read as JSON when it parses, else as a string)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r}: use KEY=VALUE, e.g. blocks_per_scale=2")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


# Recipe options given as text on the command line, and what they become in TrainConfig.
PARSERS: dict[str, Callable[[Any], Any]] = {
    "widths": lambda text: parse_widths(text) if text else None,
    "frame_size": lambda text: parse_size(text, minimum=8) if text else None,
    "model_overrides": lambda items: parse_overrides(items or []),
    "extra_data": lambda items: tuple(items) if items else None,
}


def recipe_options(ctx: typer.Context) -> tuple[dict[str, Any], dict[str, Any]]:
    """(values, given): the TrainConfig fields this command line sets (None: the recipe's),
    and those of them typed on the command line (what --resume compares)."""
    values, given = {}, {}
    for name, value in ctx.params.items():
        if name not in RECIPE_FIELDS:
            continue
        value = PARSERS.get(name, _plain)(value)
        if value is None:
            continue
        values[name] = value
        if _from_command_line(ctx, name):
            given[name] = value
    if values.get("task") == "depth":
        for options in (values, given):
            if "widths" in options:  # --widths are the estimator's
                options["depth_widths"] = options.pop("widths")
        # The depth estimator trains on exact depth; the recipe's D_b option does not apply.
        values.setdefault("depth_model", TrainConfig.depth_model)  # the paper's default
    return values, given


def run_options(ctx: typer.Context) -> dict[str, Any]:
    """The RunOptions fields this command line sets."""
    return {name: _plain(value) for name, value in ctx.params.items() if name in RUN_FIELDS}


def _from_command_line(ctx: typer.Context, name: str) -> bool:
    # Compared by name: Typer may bring its own copy of click's ParameterSource enum.
    return getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _fmt_record(r: dict[str, Any]) -> str:
    """step, loss (terms), lr, samples/s, ETA: the one line a training step shows."""
    terms = " ".join(f"{k[5:]} {v:.3g}" for k, v in sorted(r.items()) if k.startswith("loss_"))
    eta = r.get("eta_s", 0.0)
    eta_text = f"{int(eta // 3600)}:{time.strftime('%M:%S', time.gmtime(eta))}"
    where = f"step {r['step']}/{r['steps']}"
    if "budget_fraction" in r:
        where = f"step {r['step']} ({r['budget_fraction']:.0%} of the time budget)"
    wait = f"  data wait {r['data_wait_fraction']:.0%}" if r.get("data_wait_fraction") else ""
    return (
        f"{where}  loss {r['loss']:.4g} ({terms})  lr {r['lr']:.2e}  "
        f"{r['samples_per_s']:.1f} samples/s{wait}  ETA {eta_text}"
    )


class TrainDisplay:
    """Renders the loop's events on stderr: a live rich progress bar on a terminal, plain
    lines (one per logged step) otherwise, e.g. in a log file or CI."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.live = enabled and err_console.is_terminal
        self.progress: Progress | None = None
        self.task = None
        self.budget: float | None = None

    def print(self, text: str) -> None:
        console = self.progress.console if self.progress is not None else err_console
        console.print(text, soft_wrap=True, highlight=False)

    def __call__(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        event = record.get("event")
        if event == "start":
            verb = "resuming at" if record["resumed"] else "starting at"
            self.print(
                f"train {verb} step {record['step']}/{record['steps']} on {record['device']} "
                f"({record['precision']}, {record['world_size']} process(es), global batch "
                f"{record['global_batch']}, {record['parameters']:,} parameters, "
                f"{record['train_items']:,} training items)"
            )
            if record.get("warning"):
                self.print(f"[yellow]warning:[/] {record['warning']}")
            self.steps = record["steps"]
            self.budget = record.get("time_budget_s")
            if self.live:
                self.progress = Progress(
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.description}"),
                    console=err_console,
                )
                self.progress.start()
                total = 1000 if self.budget else record["steps"]
                done = 0 if self.budget else record["step"]
                self.task = self.progress.add_task("", total=total, completed=done)
        elif event == "depth_cache":
            done, total = record["done"], record["total"]
            if done == total or done % max(1, total // 10) == 0:
                self.print(f"depth maps for the cache: {done}/{total}")
        elif event == "train":
            line = _fmt_record({"steps": self.steps, **record})
            if self.progress is not None:
                done = record["step"]
                if "budget_fraction" in record:
                    done = round(1000 * record["budget_fraction"])
                self.progress.update(
                    self.task, completed=done, description=line[line.index("loss") :]
                )
            else:
                self.print(line)
        elif event == "val":
            skip = ("event", "step", "count")
            metrics = "  ".join(f"{k} {v:.4f}" for k, v in record.items() if k not in skip)
            self.print(f"val step {record['step']}  {metrics}")
        elif event == "compile_fallback":
            self.print(f"torch.compile failed, training uncompiled: {record['reason']}")
        elif event == "checkpoint" and not self.live:
            self.print(f"checkpoint {record['path']} (step {record['step']})")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def register(app: typer.Typer) -> None:
    @app.command("train")
    @cli_errors
    def train(
        ctx: typer.Context,
        out: Annotated[Path, typer.Option("--out", help="run folder: checkpoint.pt, log.jsonl")],
        data: Annotated[
            str | None,
            recipe_option("--data", "'synth' (generated on the fly) or a GOPRO-layout folder"),
        ] = None,
        extra_data: Annotated[
            list[str] | None,
            recipe_option(
                "--extra-data",
                "another GOPRO-layout folder whose train split joins --data's (repeatable; "
                "validation stays on --data's test split)",
            ),
        ] = None,
        task: Annotated[Task | None, recipe_option("--task", "what to train")] = None,
        steps: Annotated[
            int | None,
            recipe_option("--steps", "optimiser steps (paper: 600 GOPRO epochs = 315000)"),
        ] = None,
        batch_size: Annotated[
            int | None, recipe_option("--batch-size", "per process (x GPUs under torchrun)")
        ] = None,
        recipe: Annotated[
            Recipe,
            typer.Option(
                "--recipe",
                help="fast: AdamW, lr 1e-3, warm-up + cosine, Charbonnier + FFT-L1, EMA, "
                "192-px crops towards blur, degraded exact depth as D_b; paper: Sec. V-A. "
                "Options given here override the recipe's values",
            ),
        ] = Recipe.fast,
        crop: Annotated[int | None, recipe_option("--crop", "training crop size")] = None,
        lr: Annotated[float | None, recipe_option("--lr", "peak learning rate")] = None,
        lr_final: Annotated[
            float | None, recipe_option("--lr-final", "lr at the last step")
        ] = None,
        weight_decay: Annotated[
            float | None, recipe_option("--weight-decay", "decoupled (AdamW), conv weights only")
        ] = None,
        lambda_c: Annotated[
            float | None, recipe_option("--lambda-c", "content loss weight")
        ] = None,
        lambda_p: Annotated[
            float | None,
            recipe_option("--lambda-p", "perceptual (VGG-19 conv3_3) weight; 0 = off"),
        ] = None,
        loss: Annotated[
            str | None, recipe_option("--loss", "content loss: mse | charbonnier")
        ] = None,
        lambda_fft: Annotated[
            float | None, recipe_option("--lambda-fft", "frequency-domain L1 weight")
        ] = None,
        schedule: Annotated[
            str | None, recipe_option("--schedule", "paper (Eq. 10) | cosine (with warm-up)")
        ] = None,
        warmup: Annotated[
            float | None, recipe_option("--warmup", "cosine: warm-up, fraction of the steps")
        ] = None,
        ema: Annotated[
            float | None, recipe_option("--ema", "EMA decay of the exported weights (0 = off)")
        ] = None,
        crop_bias: Annotated[
            float | None,
            recipe_option("--crop-bias", "sample crops towards blur (extent maps); 0 = uniform"),
        ] = None,
        grad_clip: Annotated[
            float | None, recipe_option("--grad-clip", "clip the gradient norm to this; 0 = off")
        ] = None,
        time_budget: Annotated[
            float | None,
            recipe_option(
                "--time-budget",
                "train for this many seconds: the lr schedule, validation and the end "
                "follow the fraction of the budget elapsed; --steps becomes an upper bound",
            ),
        ] = None,
        synth_render: Annotated[
            str | None,
            recipe_option(
                "--synth-render",
                "--data synth: 'scene' (crop-sized scenes) or 'frame' (crops of whole "
                "1280x720 handheld frames rendered by --workers processes)",
            ),
        ] = None,
        crops_per_frame: Annotated[
            int | None, recipe_option("--crops-per-frame", "--synth-render frame: crops per frame")
        ] = None,
        frame_size: Annotated[
            str | None,
            recipe_option(
                "--frame-size",
                "--data synth: size of the validation frames and (--synth-render frame) "
                "of the rendered training frames, WIDTHxHEIGHT",
            ),
        ] = None,
        lambda_d: Annotated[float | None, recipe_option("--lambda-d", "depth loss weight")] = None,
        lambda_grad: Annotated[
            float | None, recipe_option("--lambda-grad", "depth task: gradient-matching weight")
        ] = None,
        depth_loss: Annotated[
            str | None,
            recipe_option(
                "--depth-loss",
                "depth task: absolute (L2 to the frame-normalised depth) | invariant (after a "
                "per-crop scale and shift; the net's whole-frame answer is min-max normalised)",
            ),
        ] = None,
        depth_target: Annotated[
            str | None,
            recipe_option(
                "--depth-target",
                "depth task: depth (the reference depth) | extent (the per-pixel blur extent of "
                "a `dgn data synth` split, which a crop can read from its own pixels; the net's "
                "whole-frame answer is min-max normalised and validated against the depth)",
            ),
        ] = None,
        widths: Annotated[
            str | None,
            typer.Option(
                "--widths",
                help="DGN widths per scale (depth task: 4 widths)",
                show_default=f"{recipe_default('widths')}; depth task "
                f"{recipe_default('depth_widths')}",
            ),
        ] = None,
        model_overrides: Annotated[
            list[str] | None,
            typer.Option("--config", help="model config override KEY=VALUE (repeatable)"),
        ] = None,
        photos: Annotated[str | None, recipe_option("--photos", "photos for --data synth")] = None,
        depth_model: Annotated[
            str | None,
            recipe_option(
                "--depth-model",
                "frozen estimator for the initial depth D_b, 'exact', 'degraded' (exact "
                "depth with an estimator's errors), or 'parallax' (--task video: each "
                "window's motion, as deblur-video --video-depth parallax)",
            ),
        ] = None,
        seed: Annotated[int | None, recipe_option("--seed")] = None,
        val_count: Annotated[int | None, recipe_option("--val-count", "validation images")] = None,
        synth_length: Annotated[
            int | None,
            recipe_option(
                "--synth-scenes", "--data synth: number of distinct training scenes", "synth_length"
            ),
        ] = None,
        synth_cache: Annotated[
            bool | None,
            recipe_option(
                "--cache-scenes",
                "keep scenes in memory: --data synth renders each once (use with "
                "--workers 0 and a modest --synth-scenes); a folder decodes each frame once",
                "synth_cache",
            ),
        ] = None,
        init: Annotated[
            str | None,
            recipe_option(
                "--init",
                "start from these weights (registry name or file) and fine-tune; "
                "same task and widths",
            ),
        ] = None,
        jpeg: Annotated[
            float | None,
            recipe_option(
                "--jpeg",
                "share of training inputs passed through JPEG (quality 60-95), so the net "
                "learns what compression artefacts are instead of sharpening them",
            ),
        ] = None,
        widen: Annotated[
            bool | None,
            recipe_option(
                "--widen",
                "--init weights narrower than --widths grow to them, computing the same "
                "(new channels start near-silent): a flattened campaign goes on wider",
            ),
        ] = None,
        resume: Annotated[
            bool, typer.Option("--resume", help="continue the run in --out exactly")
        ] = False,
        export: Annotated[
            str | None, typer.Option("--export", help="write weights/NAME.safetensors at the end")
        ] = None,
        export_dir: Annotated[
            Path | None, typer.Option("--export-dir", help="folder for --export")
        ] = None,
        export_dtype: Annotated[ExportDtype, typer.Option("--export-dtype")] = ExportDtype.fp32,
        overwrite_export: Annotated[
            bool, typer.Option("--overwrite", help="let --export replace an existing file")
        ] = False,
        vgg_weights: Annotated[
            str | None, typer.Option("--vgg-weights", help="local VGG-19 state dict file")
        ] = None,
        depth_cache: Annotated[
            str | None, typer.Option("--depth-cache", help="folder data: depth map cache folder")
        ] = None,
        workers: Annotated[
            int,
            typer.Option(
                "--workers", help="data loader (or, --synth-render frame, render) processes"
            ),
        ] = 2,
        ckpt_every: Annotated[int, typer.Option("--ckpt-every")] = 1000,
        val_every: Annotated[int, typer.Option("--val-every", help="0 = only at the end")] = 5000,
        log_every: Annotated[int, typer.Option("--log-every")] = 50,
        precision: Annotated[
            Precision,
            typer.Option(
                "--precision",
                help="auto: bf16 on CUDA GPUs and AMX CPUs, else fp32 (fp16: inference only)",
            ),
        ] = Precision.auto,
        compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model")] = False,
        channels_last: Annotated[
            bool,
            typer.Option(
                "--channels-last/--no-channels-last", help="NHWC memory layout (faster on GPU/CPU)"
            ),
        ] = True,
        device: DeviceOpt = "auto",
        json_out: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        """Train a DGN (image, video, baseline, concat) or the small depth estimator.

        --recipe fast by default (see --recipe); --recipe paper is Sec. V-A (lr 1e-4 for half
        the steps then linear to 1e-6, batch 4, 256 crops, losses 1 / 0.01 / 1), with decoupled
        weight decay. Ctrl-C saves and exits 130; rerun with --resume to continue exactly.
        """
        for name in ("steps", "batch_size", "crop", "ckpt_every", "log_every"):
            if ctx.params[name] is not None and ctx.params[name] < 1:
                raise typer.BadParameter(f"--{name.replace('_', '-')} must be at least 1")
        values, given = recipe_options(ctx)
        cfg = recipe_config(recipe.value, **values)
        run = RunOptions(**run_options(ctx))
        training.export_path(run)  # --export NAME and the export folder's manifest, up front
        if cfg.data != "synth" and not Path(cfg.data).exists() and not resume:
            raise InputError(
                f"{cfg.data}: no such folder; --data takes a GOPRO-layout folder or 'synth'"
            )
        for folder in () if resume else cfg.extra_data:
            if not Path(folder).is_dir():
                raise InputError(
                    f"{folder}: no such folder; --extra-data takes GOPRO-layout folders"
                )

        # Under torchrun every process runs this command; only rank 0 talks.
        show = not quiet and distributed.env_info().is_main

        display = TrainDisplay(enabled=show)

        try:
            # On --resume only the options given again are compared with the stored recipe.
            summary = training.train(
                cfg, run, resume=resume, resume_overrides=given if resume else {}, on_event=display
            )
        finally:
            display.close()
        if json_out:
            if distributed.env_info().is_main:
                print_json(summary)
        elif show:
            if summary["interrupted"]:
                display.print(
                    f"interrupted: saved {summary['checkpoint']} at step {summary['step']}; "
                    "continue with the same command and --resume"
                )
            else:
                display.print(
                    f"done: step {summary['step']}, loss {_num(summary['loss'])}, "
                    f"{summary['wall_time_s']:.0f} s; checkpoint {summary['checkpoint']}"
                )
            if "export" in summary:
                display.print(f"exported {summary['export']['path']} (registry entry added)")
        if summary["interrupted"]:
            raise typer.Exit(130)
