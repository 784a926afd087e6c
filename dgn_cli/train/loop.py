"""The training loop: `train(cfg, run)` trains or resumes the run in `run.out` and returns its
summary. Read `_train` top to bottom: where the run starts, the model and optimiser, losses
and data, then each step (batch, lr, forward, one collective, backward, log, validate,
checkpoint) and the end (summary, export)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from dgn_cli import devices, distributed
from dgn_cli.data.datasets import SynthDataset
from dgn_cli.ema import EMA
from dgn_cli.errors import OutputError
from dgn_cli.train import budget as time_budget
from dgn_cli.train.config import RunOptions, TrainConfig, TrainingError, merge_resume_config
from dgn_cli.train.data_order import BatchFeed
from dgn_cli.train.datasets import build_datasets, build_frame_pool
from dgn_cli.train.export import export_path, export_weights
from dgn_cli.train.health import (
    DivergenceWatch,
    check_finite_weights,
    check_health,
    health_record,
    non_finite_loss,
)
from dgn_cli.train.meter import Meter
from dgn_cli.train.model import (
    add_degraded_depth,
    batch_loss,
    build_loss,
    build_model,
    load_frozen_depth,
    load_init_weights,
)
from dgn_cli.train.optim import build_optimizer, lr_at, set_lr
from dgn_cli.train.state import (
    CHECKPOINT_NAME,
    LOG_NAME,
    JsonLog,
    Position,
    StopFlag,
    load_checkpoint,
    restore,
    save_checkpoint,
    seed_everything,
)
from dgn_cli.train.step import Flags, StepModel
from dgn_cli.train.validate import validate


def train(
    cfg: TrainConfig,
    run: RunOptions,
    resume: bool = False,
    resume_overrides: dict[str, Any] | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    datasets: tuple[Dataset, Dataset] | None = None,
) -> dict[str, Any]:
    """Train (or resume) a run in `run.out`; returns a summary dict. Library code: no printing,
    progress goes to `on_event(record)` on rank 0 (record["event"] is start, train, val,
    checkpoint or end). `datasets` replaces build_datasets (tests). Under torchrun each
    process calls this and joins the process group."""
    info0 = distributed.env_info()
    device = devices.resolve_device(run.device, info0.local_rank)
    # Denormal floats (tiny activations and gradients late in training) make x86 float math
    # ~10x slower: a CPU run went from 0.8 to 6.5 s/step after 1000 steps. Flush them to 0.
    torch.set_flush_denormal(True)
    info = distributed.init(device)
    try:
        return _train(cfg, run, resume, resume_overrides or {}, on_event, datasets, device, info)
    finally:
        distributed.shutdown()


def _train(cfg, run, resume, resume_overrides, on_event, datasets, device, info):
    t_setup = time.perf_counter()
    emit = on_event if (on_event is not None and info.is_main) else (lambda record: None)
    out = Path(run.out)
    ckpt_path, log = out / CHECKPOINT_NAME, JsonLog(out / LOG_NAME, info.is_main)
    dtype = devices.resolve_precision(device, run.precision, training=True)
    precision, warning = devices.precision_name(dtype), devices.precision_warning(device, dtype)
    channels_last = run.channels_last and device.type in ("cuda", "cpu")

    def note(record: dict[str, Any]) -> None:
        log.write(record)
        emit(record)

    # 1. Where we start: a fresh run, or the checkpoint's recipe, weights and RNG states.
    payload = load_checkpoint(ckpt_path) if resume else None
    if payload is not None:
        cfg = merge_resume_config(TrainConfig.from_json(payload["config"]), resume_overrides)
    _check_targets(ckpt_path, resume, run)

    # 2. Model and optimiser, seeded identically on every rank.
    seed_everything(cfg.seed)
    model = build_model(cfg).to(device)
    optimizer = build_optimizer(model, cfg)
    start, init_from = Position(), None
    if payload is not None:
        start = restore(payload, model, optimizer)
        log.truncate_after(start.step)
    elif cfg.init:
        init_from = load_init_weights(model, cfg.init, widen=cfg.widen)
    budget = _time_budget(cfg, run, start.wall_time_s)
    start_health = health_record(model)
    check_health(start_health, cfg, start.step, ckpt_path)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    # A continuation (--init; also on resume, cfg being the checkpoint's) averages from its
    # trained start at full decay.
    ema = EMA(model, cfg.ema, warmup=not cfg.init) if cfg.ema > 0 else None
    if ema is not None and payload is not None and "ema" in payload:
        ema.load_state_dict(payload["ema"])
    eval_model = ema.shadow if ema is not None else model  # what is validated and exported

    # 3. Loss (VGG-19 for the perceptual term), frozen depth estimator, data.
    loss_fn, estimator = _loss_and_estimator(cfg, run, device, channels_last)

    def cache_progress(done: int, total: int) -> None:
        emit({"event": "depth_cache", "step": start.step, "done": done, "total": total})

    train_set, val_set = datasets or build_datasets(cfg, run, estimator, info, cache_progress)
    pool = None  # --synth-render frame: crops of whole frames rendered by worker processes
    if datasets is None and cfg.data == "synth" and cfg.synth_render == "frame":
        pool = build_frame_pool(cfg, run, info, start.step)
    feed = BatchFeed(cfg, train_set, pool, start.step, info, run.workers, device, channels_last)

    # 4. DDP and compile wrap the module used for training steps; `model` stays the plain one.
    if run.compile and info.is_main:
        out.mkdir(parents=True, exist_ok=True)  # a compile fallback is written to the log
    step_model = StepModel(model, info, device, run.compile, note, start.step)

    def step_loss(batch: dict[str, torch.Tensor], step: int):
        with devices.autocast(device, devices.PRECISIONS[precision]):
            return step_model.call(
                lambda net: batch_loss(net, batch, cfg, loss_fn, estimator), step
            )

    step, last_val, last_loss = start.step, start.val, start.loss

    def save(step: int) -> None:
        check_finite_weights(model, step, ckpt_path)
        if info.is_main:
            save_checkpoint(
                ckpt_path,
                model,
                optimizer,
                cfg,
                step=step,
                wall_time_s=start.wall_time_s + time.perf_counter() - t_start,
                val=last_val,
                loss=last_loss,
                **({"ema": ema.state_dict()} if ema is not None else {}),
            )
            emit({"event": "checkpoint", "step": step, "path": str(ckpt_path)})

    if budget is not None:
        _render_validation_frames(val_set, info)
    global_batch = cfg.batch_size * info.world_size
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    emit(
        {
            "event": "start",
            "step": start.step,
            "steps": cfg.steps,
            "device": str(device),
            "precision": precision,
            **({"warning": warning} if warning else {}),
            "world_size": info.world_size,
            "global_batch": global_batch,
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_items": len(train_set),
            **({"time_budget_s": cfg.time_budget} if budget is not None else {}),
            **({"synth_render": "frame", "render_workers": run.workers} if pool else {}),
            "resumed": payload is not None,
            **start_health,
            **({"init": str(init_from)} if init_from is not None else {}),
        }
    )

    # 5. The loop.
    watch = DivergenceWatch(cfg.divergence)
    t_start = time.perf_counter()
    setup_s = t_start - t_setup
    if budget is not None:
        budget.start()
    meter = Meter(global_batch, info.world_size, t0=t_start)
    interrupted = False
    model.train()
    with StopFlag(run.handle_signals) as stop, contextlib.ExitStack() as cleanup:
        if pool is not None:
            cleanup.callback(pool.close)
        while step < cfg.steps:
            t_wait = time.perf_counter()
            batch = feed.next()
            if batch is None:
                break
            meter.waited(time.perf_counter() - t_wait)
            lr = set_lr(optimizer, lr_at(step, cfg)) if budget is None else math.nan
            add_degraded_depth(batch, cfg, seed=cfg.seed * 1_000_003 + step)
            batch = feed.to_device(batch)
            loss, terms = step_loss(batch, step)
            flags = Flags.agreed(loss, stop, budget, info)
            if budget is not None:  # the schedule follows the budget's clock
                lr = set_lr(optimizer, time_budget.lr_at_fraction(flags.progress, cfg))
            if flags.non_finite:
                raise non_finite_loss(step, lr, precision, ckpt_path)

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                meter.add_value("grad_norm", grad_norm)
            optimizer.step()
            if ema is not None:
                ema.update(model)
            step += 1
            done = step == cfg.steps or flags.budget_spent
            meter.add(loss, terms)

            # Log, validate, checkpoint, stop.
            if step % run.log_every == 0 or done:
                record = {**meter.record(step, lr, cfg.steps, budget), **health_record(model)}
                last_loss = record["loss"]
                note(record)
                check_health(record, cfg, step, ckpt_path)
                watch.check(record["loss"], step, ckpt_path)
            if budget is not None:
                val_due = done or flags.val_due
            else:
                val_due = done or (run.val_every > 0 and step % run.val_every == 0)
            if val_due:
                t_val = time.perf_counter()
                last_val = validate(eval_model, val_set, cfg, estimator, device, precision, info)
                if budget is not None:
                    budget.timed_validation(time.perf_counter() - t_val)
                    budget.validated()
                note({"event": "val", "step": step, **last_val})
            if flags.stop:
                interrupted = True
                save(step)
                break
            if step % run.ckpt_every == 0 or done:
                save(step)
            if done:
                break

    # 6. The end: every rank reports a digest of its weights (they must agree under DDP).
    wall = start.wall_time_s + time.perf_counter() - t_start
    digests = distributed.gather_strings(distributed.state_digest(model.state_dict()))
    summary: dict[str, Any] = {
        "event": "end",
        "step": step,
        "loss": None if math.isnan(last_loss) else last_loss,
        "steps": cfg.steps,
        "interrupted": interrupted,
        "wall_time_s": wall,
        "val": last_val,
        "checkpoint": str(ckpt_path),
        "log": str(log.path),
        "device": str(device),
        "precision": precision,
        "world_size": info.world_size,
        "hardware": devices.device_name(device),
        "setup_s": setup_s,
        "data_wait_fraction": meter.wait_total / max(time.perf_counter() - t_start, 1e-9),
        **({"time_budget_s": cfg.time_budget} if budget is not None else {}),
        **(pool.stats() if pool is not None else {}),
        "rank_digests": digests,
        "ranks_in_sync": len(set(digests)) == 1,
    }
    if step == start.step and info.is_main and not ckpt_path.exists():
        save(step)  # a zero-step run still leaves a resumable checkpoint
    if run.export and not interrupted and info.is_main:
        summary["export"] = export_weights(eval_model, cfg, run, summary)
    note(summary)
    distributed.barrier()
    return summary


def _check_targets(ckpt_path: Path, resume: bool, run: RunOptions) -> None:
    """Never overwrite a run folder's checkpoint, nor an exported file, by accident."""
    if not resume and ckpt_path.exists():
        raise TrainingError(
            f"{ckpt_path} exists; pass --resume to continue that run or choose another --out"
        )
    target = export_path(run)
    if target is not None and target.exists() and not run.overwrite_export:
        raise OutputError(f"{target} exists; pass --overwrite to replace it or pick another name")


def _time_budget(
    cfg: TrainConfig, run: RunOptions, elapsed_before: float
) -> time_budget.TimeBudget | None:
    """--time-budget: the clock the schedule, validation and the end follow (None: steps)."""
    if cfg.time_budget <= 0:
        return None
    val_every = time_budget.VAL_EVERY_FRACTION if run.val_every > 0 else 0.0
    return time_budget.TimeBudget(cfg.time_budget, elapsed_before, val_every)


def _render_validation_frames(val_set: Dataset, info: distributed.DistInfo) -> None:
    """Render this rank's synthetic validation frames now, outside a time budget (setup_s), so
    a validation's time inside the budget is the model's alone and the reserve for the last
    one holds. The dataset caches them."""
    if isinstance(val_set, SynthDataset):
        for i in range(info.rank, len(val_set), info.world_size):
            val_set[i]


def _loss_and_estimator(
    cfg: TrainConfig, run: RunOptions, device: torch.device, channels_last: bool
) -> tuple[nn.Module, nn.Module | None]:
    """The loss module and the frozen depth estimator of D_b (None without one)."""
    loss_fn = build_loss(cfg, run, device)
    estimator = load_frozen_depth(cfg, device)
    if channels_last:
        loss_fn = loss_fn.to(memory_format=torch.channels_last)
        if estimator is not None:
            estimator = estimator.to(memory_format=torch.channels_last)
    return loss_fn, estimator
