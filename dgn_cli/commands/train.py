"""`dgn train`: the paper's training recipe; resumable, mixed precision, torchrun-ready.

dgn train --data synth --task image --steps 20000 --out runs/image
dgn train --data GOPRO_Large/ --task image --out runs/gopro --export dgn-image
torchrun --nproc-per-node 4 -m dgn_cli train --data GOPRO_Large/ --out runs/gopro
"""

from __future__ import annotations

import json
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from dgn_cli.commands.common import (
    DeviceOpt,
    JsonOpt,
    Precision,
    QuietOpt,
    cli_errors,
    err_console,
    print_json,
)
from dgn_cli.errors import InputError


class Task(StrEnum):
    image = "image"
    video = "video"
    baseline = "baseline"
    concat = "concat"
    depth = "depth"


class Recipe(StrEnum):
    fast = "fast"
    paper = "paper"


class ExportDtype(StrEnum):
    fp32 = "fp32"
    fp16 = "fp16"


# CLI option name -> TrainConfig field, for the recipe options (checked again on --resume).
RECIPE_OPTIONS = {
    "task": "task",
    "data": "data",
    "photos": "photos",
    "steps": "steps",
    "batch_size": "batch_size",
    "crop": "crop",
    "lr": "lr",
    "lr_final": "lr_final",
    "weight_decay": "weight_decay",
    "lambda_c": "lambda_c",
    "lambda_p": "lambda_p",
    "lambda_d": "lambda_d",
    "lambda_grad": "lambda_grad",
    "widths": "widths",
    "depth_model": "depth_model",
    "seed": "seed",
    "val_count": "val_count",
    "synth_scenes": "synth_length",
    "cache_scenes": "synth_cache",
    "config": "model_overrides",
    "init": "init",
    "recipe": "recipe",
    "loss": "loss",
    "lambda_fft": "lambda_fft",
    "schedule": "schedule",
    "warmup": "warmup",
    "ema": "ema",
    "crop_bias": "crop_bias",
    "grad_clip": "grad_clip",
    "time_budget": "time_budget",
    "synth_render": "synth_render",
    "crops_per_frame": "crops_per_frame",
    "frame_size": "frame_size",
}


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


def _parse_size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    try:
        size = (int(w), int(h))
    except ValueError:
        size = (0, 0)
    if not sep or min(size) < 8:
        raise typer.BadParameter(f"{text!r}: give WIDTHxHEIGHT, e.g. 1280x720")
    return size


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
            str,
            typer.Option("--data", help="'synth' (generated on the fly) or a GOPRO-layout folder"),
        ] = "synth",
        task: Annotated[Task, typer.Option("--task", help="what to train")] = Task.image,
        steps: Annotated[
            int, typer.Option("--steps", help="optimiser steps (paper: 600 GOPRO epochs = 315000)")
        ] = 315_000,
        batch_size: Annotated[
            int, typer.Option("--batch-size", help="per process (x GPUs under torchrun)")
        ] = 4,
        recipe: Annotated[
            Recipe,
            typer.Option(
                "--recipe",
                help="fast: AdamW, lr 1e-3, warm-up + cosine, Charbonnier + FFT-L1, EMA, "
                "192-px crops towards blur, degraded exact depth as D_b; paper: Sec. V-A. "
                "Options given here override the recipe's values",
            ),
        ] = Recipe.fast,
        crop: Annotated[
            int | None, typer.Option("--crop", help="training crop size [fast 192, paper 256]")
        ] = None,
        lr: Annotated[
            float | None, typer.Option("--lr", help="peak learning rate [fast 1e-3, paper 1e-4]")
        ] = None,
        lr_final: Annotated[float, typer.Option("--lr-final", help="lr at the last step")] = 1e-6,
        weight_decay: Annotated[
            float, typer.Option("--weight-decay", help="decoupled (AdamW), conv weights only")
        ] = 1e-4,
        lambda_c: Annotated[float, typer.Option("--lambda-c", help="content loss weight")] = 1.0,
        lambda_p: Annotated[
            float | None,
            typer.Option(
                "--lambda-p",
                help="perceptual (VGG-19 conv3_3) weight; 0 = off [fast 0, paper 0.01]",
            ),
        ] = None,
        loss: Annotated[
            str | None, typer.Option("--loss", help="content loss: mse | charbonnier")
        ] = None,
        lambda_fft: Annotated[
            float | None, typer.Option("--lambda-fft", help="frequency-domain L1 weight")
        ] = None,
        schedule: Annotated[
            str | None, typer.Option("--schedule", help="paper (Eq. 10) | cosine (with warm-up)")
        ] = None,
        warmup: Annotated[
            float | None, typer.Option("--warmup", help="cosine: warm-up, fraction of the steps")
        ] = None,
        ema: Annotated[
            float | None, typer.Option("--ema", help="EMA decay of the exported weights (0 = off)")
        ] = None,
        crop_bias: Annotated[
            float | None,
            typer.Option(
                "--crop-bias", help="sample crops towards blur (extent maps); 0 = uniform"
            ),
        ] = None,
        grad_clip: Annotated[
            float | None,
            typer.Option("--grad-clip", help="clip the gradient norm to this; 0 = off [fast 0.5]"),
        ] = None,
        time_budget: Annotated[
            float | None,
            typer.Option(
                "--time-budget",
                help="train for this many seconds: the lr schedule, validation and the end "
                "follow the fraction of the budget elapsed; --steps becomes an upper bound",
            ),
        ] = None,
        synth_render: Annotated[
            str | None,
            typer.Option(
                "--synth-render",
                help="--data synth: 'scene' (crop-sized scenes) or 'frame' (crops of whole "
                "1280x720 handheld frames rendered by --workers processes)",
            ),
        ] = None,
        crops_per_frame: Annotated[
            int | None,
            typer.Option("--crops-per-frame", help="--synth-render frame: crops per frame [8]"),
        ] = None,
        frame_size: Annotated[
            str | None,
            typer.Option(
                "--frame-size",
                help="--data synth: size of the validation frames and (--synth-render frame) "
                "of the rendered training frames, WIDTHxHEIGHT [1280x720]",
            ),
        ] = None,
        lambda_d: Annotated[float, typer.Option("--lambda-d", help="depth loss weight")] = 1.0,
        lambda_grad: Annotated[
            float, typer.Option("--lambda-grad", help="depth task: gradient-matching weight")
        ] = 0.5,
        widths: Annotated[
            str, typer.Option("--widths", help="DGN widths per scale (depth task: 4 widths)")
        ] = "",
        config: Annotated[
            list[str],
            typer.Option("--config", help="model config override KEY=VALUE (repeatable)"),
        ] = [],  # noqa: B006 (typer needs a literal default)
        photos: Annotated[
            str, typer.Option("--photos", help="photos for --data synth")
        ] = "data/photos",
        depth_model: Annotated[
            str | None,
            typer.Option(
                "--depth-model",
                help="frozen estimator for the initial depth D_b, 'exact', or 'degraded' (exact "
                "depth with an estimator's errors) [fast degraded, paper dgn-depth-small]",
            ),
        ] = None,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        val_count: Annotated[int, typer.Option("--val-count", help="validation images")] = 16,
        synth_scenes: Annotated[
            int,
            typer.Option("--synth-scenes", help="--data synth: number of distinct training scenes"),
        ] = 100_000,
        cache_scenes: Annotated[
            bool,
            typer.Option(
                "--cache-scenes",
                help="keep scenes in memory: --data synth renders each once (use with "
                "--workers 0 and a modest --synth-scenes); a folder decodes each frame once",
            ),
        ] = False,
        init: Annotated[
            str | None,
            typer.Option(
                "--init",
                help="start from these weights (registry name or file) and fine-tune; "
                "same task and widths",
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
        overwrite: Annotated[
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
        from dgn_cli import distributed
        from dgn_cli import train as training

        for name, value in (
            ("steps", steps),
            ("batch_size", batch_size),
            ("crop", crop or 1),
            ("ckpt_every", ckpt_every),
            ("log_every", log_every),
        ):
            if value < 1:
                raise typer.BadParameter(f"--{name.replace('_', '-')} must be at least 1")
        default_widths = (16, 32, 64, 128) if task == Task.depth else (32, 64, 128)
        width_tuple = parse_widths(widths) if widths else default_widths
        overrides = parse_overrides(config)
        values = {
            "task": task.value,
            "data": data,
            "photos": photos,
            "steps": steps,
            "batch_size": batch_size,
            "crop": crop,
            "lr": lr,
            "lr_final": lr_final,
            "weight_decay": weight_decay,
            "lambda_c": lambda_c,
            "lambda_p": lambda_p,
            "lambda_d": lambda_d,
            "lambda_grad": lambda_grad,
            "depth_model": depth_model,
            "loss": loss,
            "lambda_fft": lambda_fft,
            "schedule": schedule,
            "warmup": warmup,
            "ema": ema,
            "crop_bias": crop_bias,
            "grad_clip": grad_clip,
            "time_budget": time_budget,
            "synth_render": synth_render,
            "crops_per_frame": crops_per_frame,
            "frame_size": _parse_size(frame_size) if frame_size else None,
            "recipe": recipe.value,
            "seed": seed,
            "val_count": val_count,
            "synth_length": synth_scenes,
            "synth_cache": cache_scenes,
            "model_overrides": overrides,
            "init": init,
        }
        if task == Task.depth:
            values["depth_widths"] = width_tuple
        else:
            values["widths"] = width_tuple
        values = {k: v for k, v in values.items() if v is not None}  # None: the recipe's
        if task == Task.depth:
            # The depth estimator trains on exact depth; D_b options do not apply to it.
            values.setdefault("depth_model", "dgn-depth-small")
        cfg = training.recipe_config(recipe.value, **values)

        # On --resume only the options given again are compared with the stored recipe.
        explicit: dict[str, Any] = {}
        if resume:
            for option, field_name in RECIPE_OPTIONS.items():
                if _from_command_line(ctx, option):
                    if option == "widths":
                        key = "depth_widths" if task == Task.depth else "widths"
                        explicit[key] = width_tuple
                    elif field_name in values:
                        explicit[field_name] = values[field_name]

        run = training.RunOptions(
            out=out,
            device=device,
            precision=precision.value,
            compile=compile,
            channels_last=channels_last,
            workers=workers,
            ckpt_every=ckpt_every,
            val_every=val_every,
            log_every=log_every,
            vgg_weights=vgg_weights,
            depth_cache=depth_cache,
            export=export,
            export_dir=export_dir,
            export_dtype=export_dtype.value,
            overwrite_export=overwrite,
        )
        training.export_path(run)  # --export NAME and the export folder's manifest, up front
        if data != "synth" and not Path(data).exists() and not resume:
            raise InputError(
                f"{data}: no such folder; --data takes a GOPRO-layout folder or 'synth'"
            )

        # Under torchrun every process runs this command; only rank 0 talks.
        show = not quiet and distributed.env_info().is_main

        display = TrainDisplay(enabled=show)

        try:
            summary = training.train(
                cfg, run, resume=resume, resume_overrides=explicit, on_event=display
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
