"""The training loop: the paper's recipe (Sec. V-A), resumable, mixed precision, DDP.

Read it top to bottom:

    TrainConfig        the recipe (stored in every checkpoint; fixed for a run's lifetime)
    RunOptions         how this invocation runs it (device, workers, logging, export)
    lr_at(step, cfg)   Eq. 10 in steps: lr for the first half, then linear to lr_final
    build_*            model, optimiser, loss, frozen depth estimator, datasets
    step_batches       the data order: a pure function of (seed, step), so resume is exact
    train(...)         the loop itself; returns a summary dict

Tasks: image (DGN, 1 frame), video (DGN, 5 frames), baseline (no depth), concat (Table X),
depth (the project's SmallDepthNet, trained on BLURRED centre frames against exact depth,
because at inference it only ever sees blurred photos).

Choices where the paper is silent:
- `--batch-size` is per process; with torchrun the global batch is batch_size x world_size and
  each rank takes its own slice of every global batch (the shards never overlap).
- Every epoch visits the data in the order of a permutation seeded by (seed, epoch); a step's
  samples are therefore a pure function of (seed, step) and resuming replays nothing.
- The initial depth D_b comes from a frozen estimator run without gradients on the blurred
  centre frame (the paper's MegaDepth role); a batch's own "depth_init" wins when present;
  `depth_model="exact"` uses the exact depth of the sharp frame (an upper-bound experiment).
- Mixed precision is bf16 autocast only (no fp16: it would need loss scaling); weights,
  optimiser state and the losses stay in fp32. `auto` picks bf16 on CUDA and on AMX CPUs
  only (see resolve_precision). Parameters and batches are channels-last (NHWC) on CUDA and
  CPU, measured faster on both.
- The loss is checked every step: a non-finite value stops training before the optimiser
  applies it, and the last checkpoint on disk (always a finite one) is kept.
- SIGINT / SIGTERM finish the current step, write the checkpoint and stop (the CLI exits 130);
  a second Ctrl-C aborts at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from dgn_cli import devices, distributed, train_budget, train_checkpoint
from dgn_cli.data.datasets import SynthDataset
from dgn_cli.data.depth_degrade import degrade_depth
from dgn_cli.data.render_pool import FramePool, batch_to_device
from dgn_cli.ema import EMA
from dgn_cli.errors import CheckpointError, DgnError, InputError, OutputError
from dgn_cli.fsutil import write_text_atomic
from dgn_cli.losses import DepthLoss, DGNLoss, LossWeights
from dgn_cli.metrics import psnr, ssim, to_255
from dgn_cli.models import DGN, DGNConfig
from dgn_cli.models.depth import SmallDepthConfig, SmallDepthNet

TASKS = ("image", "video", "baseline", "concat", "depth")
TASK_MODEL = {  # task -> (DGN variant, frames)
    "image": ("dgn", 1),
    "video": ("dgn", 5),
    "baseline": ("baseline", 1),
    "concat": ("concat", 1),
}
CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.jsonl"
CHECKPOINT_FORMAT = "dgn-train-checkpoint/1"
VAL_SEED_OFFSET = 1_000_003  # synthetic validation draws from its own seed range
EXACT_DEPTH = "exact"
DEGRADED_DEPTH = "degraded"  # exact depth with an estimator's kinds of error (data/depth_degrade)
VAL_DEGRADE_SEED = 424_242
VAL_FRAME_SIZE = (1280, 720)  # --data synth validates on whole frames of the test split's size


class TrainingError(DgnError):
    """Training cannot go on (non-finite loss, a run directory in the way, a bad resume)."""


@dataclass(frozen=True)
class TrainConfig:
    """The recipe. Paper values are the defaults (batch 4, 256 crops, Adam 0.9/0.99, wd 1e-4,
    lr 1e-4 then linear to 1e-6 over the second half, lambda_c 1, lambda_p 0.01, lambda_d 1).
    The default 315,000 steps are the paper's 600 epochs of GOPRO's 2,103 pairs at batch 4."""

    task: str = "image"
    data: str = "synth"  # "synth" or a GOPRO-layout folder
    photos: str = "data/photos"  # photos for the synthetic generator
    steps: int = 315_000
    batch_size: int = 4  # per process
    crop: int = 256
    lr: float = 1e-4
    lr_final: float = 1e-6
    weight_decay: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.99
    lambda_c: float = 1.0
    lambda_p: float = 0.01
    lambda_d: float = 1.0
    lambda_grad: float = 0.5  # depth task only: gradient-matching term
    widths: tuple[int, ...] = (32, 64, 128)  # DGN widths; the depth task uses depth_widths
    depth_widths: tuple[int, ...] = (16, 32, 64, 128)
    model_overrides: dict = field(default_factory=dict)  # extra DGNConfig / SmallDepthConfig fields
    depth_model: str = "dgn-depth-small"  # frozen estimator for D_b; "exact" = exact depth
    seed: int = 0
    synth_length: int = 100_000  # index range of the synthetic training set
    synth_cache: bool = False  # keep rendered scenes / decoded frames in memory (many epochs)
    val_count: int = 16  # validation images
    init: str | None = None  # weights to start from (fine-tuning): registry name or file
    max_zero_fraction: float = 0.2  # stop when more of the weights than this are exactly zero
    # Beyond the paper (defaults = the paper's behaviour; RECIPES["fast"] turns them on):
    recipe: str = "paper"  # the named recipe these values started from (see RECIPES)
    loss: str = "mse"  # content loss: mse (paper) | charbonnier
    charbonnier_eps: float = 1e-3
    lambda_fft: float = 0.0  # frequency-domain L1 weight
    schedule: str = "paper"  # paper (Eq. 10) | cosine (linear warm-up, then cosine to lr_final)
    warmup: float = 0.0  # cosine schedule: warm-up length, fraction of the steps
    ema: float = 0.0  # decay of the exponential moving average exported (0 = off)
    crop_bias: float = 0.0  # folder data: > 0 samples crops towards blur (extent/ maps)
    grad_clip: float = 0.0  # clip the global gradient norm to this (0 = off)
    divergence: float = 0.0  # stop when the logged loss stays above this x its best (0 = off)
    # Budgeted runs and whole-frame synthetic data (train_budget.py, data/render_pool.py):
    time_budget: float = 0.0  # seconds; > 0: schedule, validation and the end follow the clock
    synth_render: str = "scene"  # synth: crop-sized scenes (scene) | crops of 1280x720 frames
    crops_per_frame: int = 8  # synth_render=frame: crops drawn per rendered frame, on average
    pool_frames: int = 32  # synth_render=frame: rendered frames kept to draw crops from
    synth_camera: str = "handheld"  # synth_render=frame: camera statistics (data/synth.CAMERAS)
    frame_size: tuple[int, int] = VAL_FRAME_SIZE  # synth: rendered frames (frame mode), val

    def __post_init__(self):
        if self.task not in TASKS:
            raise InputError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        if self.loss not in ("mse", "charbonnier"):
            raise InputError(f"unknown loss {self.loss!r}; choose mse or charbonnier")
        if self.schedule not in ("paper", "cosine"):
            raise InputError(f"unknown schedule {self.schedule!r}; choose paper or cosine")
        if self.synth_render not in ("scene", "frame"):
            raise InputError(f"unknown synth render {self.synth_render!r}; choose scene or frame")
        if self.time_budget < 0:
            raise InputError(f"--time-budget must be positive, got {self.time_budget}")
        if not 0 <= self.ema < 1:
            raise InputError(f"--ema must be in [0, 1), got {self.ema}")
        for name in ("steps", "batch_size", "crop", "synth_length", "crops_per_frame"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be positive")
        object.__setattr__(self, "frame_size", tuple(int(v) for v in self.frame_size))
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "depth_widths", tuple(int(w) for w in self.depth_widths))

    @property
    def frames(self) -> int:
        return TASK_MODEL[self.task][1] if self.task in TASK_MODEL else 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls(**json.loads(text))


# Named recipes: TrainConfig fields that differ from the paper's defaults. `dgn train` starts
# from --recipe (fast by default) and any option given on the command line wins.
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {},
    # Measured on the handheld synthetic data (BENCHMARKS.md, "recipe ladder"): AdamW with
    # decoupled decay, lr 1e-3 with 2 % warm-up and cosine decay, Charbonnier + 0.05 FFT-L1,
    # EMA weights, 192-px crops sampled towards blur, and exact depth degraded like an
    # estimator's as D_b. No perceptual term: VGG-19 weights cannot be fetched offline.
    "fast": {
        "recipe": "fast",
        "lr": 1e-3,
        "beta2": 0.999,
        "loss": "charbonnier",
        "lambda_fft": 0.05,
        "lambda_p": 0.0,
        "schedule": "cosine",
        "warmup": 0.02,
        "ema": 0.999,
        "crop": 192,
        "crop_bias": 1.0,
        "depth_model": "degraded",
        # A CPU run at lr 1e-3 in bf16 once jumped to a saturated tanh (the branch output stuck
        # at +-1, loss 0.06 -> 1.0, no way back): clip the gradient, and stop if it happens.
        "grad_clip": 0.5,
        "divergence": 5.0,
    },
}


def recipe_config(name: str, **overrides: Any) -> TrainConfig:
    """TrainConfig of the named recipe with `overrides` (e.g. the command line's) applied."""
    if name not in RECIPES:
        raise InputError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return TrainConfig(**{**RECIPES[name], "recipe": name, **overrides})


@dataclass(frozen=True)
class RunOptions:
    """How this invocation runs the recipe; free to change between a run and its resume."""

    out: Path = Path("runs/dgn")
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16
    compile: bool = False
    channels_last: bool = True  # measured faster for fp32 on CPU too
    workers: int = 2
    ckpt_every: int = 1000
    val_every: int = 5000
    log_every: int = 50
    vgg_weights: str | None = None  # a local VGG-19 file instead of the registry's "vgg19"
    depth_cache: str | None = None  # folder data: where estimator depth maps are cached
    export: str | None = None
    export_dir: Path | None = None  # default: the registry's weights folder
    export_dtype: str = "fp32"  # fp32 | fp16
    overwrite_export: bool = False
    handle_signals: bool = True


# --- schedule ------------------------------------------------------------------------------


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate of `step`. paper: Eq. 10 in steps, cfg.lr for the first half, then
    linear down to cfg.lr_final at the end. cosine: linear warm-up over cfg.warmup of the
    steps, then a cosine from cfg.lr down to cfg.lr_final at the last step."""
    if cfg.schedule == "cosine":
        warm = max(1, round(cfg.warmup * cfg.steps)) if cfg.warmup > 0 else 0
        if step < warm:
            return cfg.lr * (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, cfg.steps - 1 - warm))
        return cfg.lr_final + (cfg.lr - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * progress))
    half = cfg.steps // 2
    if step < half:
        return cfg.lr
    progress = min(1.0, (step - half) / max(1, cfg.steps - 1 - half))
    return cfg.lr + (cfg.lr_final - cfg.lr) * progress


# --- model, optimiser, losses, depth -------------------------------------------------------


def build_model(cfg: TrainConfig) -> nn.Module:
    """A fresh DGN for the image/video/baseline/concat tasks, SmallDepthNet for depth."""
    try:
        if cfg.task == "depth":
            return SmallDepthNet(SmallDepthConfig(widths=cfg.depth_widths, **cfg.model_overrides))
        variant, frames = TASK_MODEL[cfg.task]
        return DGN(
            DGNConfig(variant=variant, frames=frames, widths=cfg.widths, **cfg.model_overrides)
        )
    except (TypeError, ValueError) as e:
        raise InputError(f"bad model configuration: {e}") from e


def load_init_weights(model: nn.Module, name_or_path: str) -> Path:
    """Start `model` from saved weights (a registry name or a safetensors / .pth file; fine-tuning):
    strict, so a checkpoint of another variant, width or frame count is refused with the first
    mismatching keys. fp16 files are upcast into the fp32 parameters. Returns the file used."""
    from dgn_cli import checkpoints

    path = checkpoints.resolve_checkpoint(name_or_path)
    state = checkpoints.load_state_dict_file(path)
    state = _image_init_for_video(model, state)
    try:
        checkpoints.load_state_dict_strict(model, state, str(path))
    except CheckpointError as e:
        raise CheckpointError(
            f"--init: {e}; --init needs weights of the same task and widths"
        ) from None
    return path


def decay_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters that get weight decay: conv (and linear) weights, never biases
    and never the SFT layers (their gamma/beta start near the identity and their condition
    convs carry the depth signal; decay there silences the guidance)."""
    return {
        name for name, p in model.named_parameters() if p.dim() > 1 and ".sft." not in f".{name}."
    }


def _image_init_for_video(model: nn.Module, state: dict) -> dict:
    """--init with IMAGE weights for a video DGN: expand Conv1 of the deblurring branch to the
    five stacked frames (centre frame = the image weights, neighbours zero), so the video
    model starts exactly where the image model is. Any other state is returned unchanged."""
    from dgn_cli.models.dgn import expand_image_state_to_video

    key = "deblur.net.conv1.0.weight"
    frames = getattr(getattr(model, "config", None), "frames", 1)
    if frames > 1 and key in state:
        own = dict(model.named_parameters()).get(key)
        if own is not None and state[key].shape[1] * frames == own.shape[1]:
            return expand_image_state_to_video(state, frames)
    return state


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW: weight decay DECOUPLED from the adaptive step (w -= lr * wd * w), on conv weights
    only. Adam's own `weight_decay` adds wd * w to the gradient before normalising it, so where
    the loss gradient is smaller than that term every step moves a weight one lr-step towards
    zero: the first shipped weights were 79-97 % exact zeros that way."""
    decay = decay_parameter_names(model)
    params = dict(model.named_parameters())
    groups = [
        {"params": [p for n, p in params.items() if n in decay], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in params.items() if n not in decay], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=lr_at(0, cfg), betas=(cfg.beta1, cfg.beta2)
    )


def load_vgg(vgg_weights: str | None, device: torch.device) -> nn.Module:
    """VGG-19 up to conv3_3 with ImageNet weights: a local file, else the registry's "vgg19"."""
    from dgn_cli import checkpoints
    from dgn_cli.models.vgg import VGG19Conv33, vgg19_conv3_3_state

    try:
        path = checkpoints.resolve_checkpoint(vgg_weights or "vgg19", kind="vgg")
        state = checkpoints.load_state_dict_file(path)
    except CheckpointError as e:
        raise CheckpointError(
            f"{e} [needed by the perceptual loss; or pass --vgg-weights FILE, "
            "or --lambda-p 0 to train without it]"
        ) from None
    vgg = VGG19Conv33()
    try:
        vgg.load_state_dict(vgg19_conv3_3_state(state), strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: not a VGG-19 state dict ({e})") from e
    return vgg.to(device)


def build_loss(cfg: TrainConfig, run: RunOptions, device: torch.device) -> nn.Module:
    if cfg.task == "depth":
        return DepthLoss(cfg.lambda_grad)
    weights = LossWeights(
        cfg.lambda_c, cfg.lambda_p, cfg.lambda_d, cfg.lambda_fft, cfg.loss, cfg.charbonnier_eps
    )
    vgg = load_vgg(run.vgg_weights, device) if cfg.lambda_p > 0 else None
    return DGNLoss(weights, vgg)


def load_frozen_depth(cfg: TrainConfig, device: torch.device) -> nn.Module | None:
    """The frozen estimator that gives D_b (None for the baseline, depth task and 'exact')."""
    if cfg.task in ("depth", "baseline") or cfg.depth_model in (EXACT_DEPTH, DEGRADED_DEPTH):
        return None
    from dgn_cli.checkpoints import load_depth_estimator

    try:
        estimator = load_depth_estimator(cfg.depth_model, device)
    except CheckpointError as e:
        raise CheckpointError(
            f"{e} [needed for the initial depth D_b; with exact depth in the data "
            "(--data synth) --depth-model exact trains without an estimator]"
        ) from None
    estimator.requires_grad_(False)
    return estimator.eval().to(device)


def centre_frame(blur: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, 3*frames, H, W) -> the centre frame (B, 3, H, W)."""
    c = frames // 2
    return blur[:, 3 * c : 3 * c + 3]


@torch.no_grad()
def initial_depth(
    batch: dict[str, torch.Tensor], cfg: TrainConfig, estimator: nn.Module | None
) -> torch.Tensor | None:
    """D_b for a batch: its own "depth_init", else the exact depth ("exact"), else the frozen
    estimator on the blurred centre frame mapped to [0, 1]. None for the baseline."""
    if cfg.task == "baseline":
        return None
    if "depth_init" in batch:
        return batch["depth_init"]
    if estimator is None:
        return batch["depth"]
    blurred01 = (centre_frame(batch["blur"], cfg.frames).float() + 1) / 2
    return estimator(blurred01).float()


# --- weight health -------------------------------------------------------------------------


def health_record(model: nn.Module) -> dict[str, Any]:
    """zero_fraction (exactly-zero parameters) and the SFT condition-weight norms, for the log."""
    from dgn_cli.weight_health import sft_condition_norms, zero_fraction

    record: dict[str, Any] = {"zero_fraction": zero_fraction(model)}
    norms = sft_condition_norms(model)
    if norms:
        record["sft_condition_norm"] = norms
    return record


def check_health(record: dict[str, Any], cfg: TrainConfig, step: int, ckpt_path: Path) -> None:
    """Stop loudly when the network is dying: more than cfg.max_zero_fraction of the weights
    exactly zero (a healthy network has almost none)."""
    fraction = record["zero_fraction"]
    if cfg.max_zero_fraction < 1.0 and fraction > cfg.max_zero_fraction:
        raise TrainingError(
            f"{fraction:.1%} of the weights are exactly zero at step {step} (limit "
            f"{cfg.max_zero_fraction:.0%}): the optimiser or the initial weights are killing "
            f"units; {ckpt_path} holds the last checkpoint. Start from fresh weights or "
            "a healthy --init, or lower --weight-decay"
        )


class DivergenceWatch:
    """Stops a run whose logged loss stays above `factor` x the best logged loss for
    `patience` logs in a row: a finite but runaway loss (e.g. a branch stuck at a saturated
    tanh) never recovers, and every checkpoint after it would overwrite a good one."""

    def __init__(self, factor: float, patience: int = 3):
        self.factor, self.patience = factor, patience
        self.best, self.bad = math.inf, 0

    def check(self, loss: float, step: int, ckpt_path: Path) -> None:
        if self.factor <= 0:
            return
        self.best = min(self.best, loss)
        self.bad = self.bad + 1 if loss > self.factor * self.best else 0
        if self.bad >= self.patience:
            raise TrainingError(
                f"training diverged by step {step}: the loss {loss:.3g} has stayed above "
                f"{self.factor:g} x its best ({self.best:.3g}); {ckpt_path} (and "
                "checkpoint.prev.pt) hold the last checkpoints; restart with a lower --lr"
            )


# --- data ----------------------------------------------------------------------------------


def build_datasets(
    cfg: TrainConfig,
    run: RunOptions,
    depth_estimator: nn.Module | None,
    info: distributed.DistInfo | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Dataset, Dataset]:
    """(train, validation) datasets for `cfg.data`.

    synth: SynthDataset rendered on the fly from `cfg.photos` (item i a pure function of
    (seed, i)); validation renders cfg.val_count un-augmented scenes from its own seed range
    (seed + VAL_SEED_OFFSET), so its scenes never occur in training (the photos that texture
    them are shared).
    folder: PairedFolderDataset train split (random crops, paper augmentation); validation is
    cfg.val_count whole frames evenly spaced over the test split. Without depth/ folders the
    frozen estimator's depth of the sharp frame is the depth target and its depth of the
    blurred frame is D_b, computed once and cached (rank 0 first, the other ranks then read
    the cache).
    """
    from dgn_cli.data import datasets as data
    from dgn_cli.data.synth import SynthConfig, camera_config

    info = info or distributed.DistInfo()
    if cfg.data == "synth":
        photos = Path(cfg.photos)
        if not photos.is_dir():
            raise InputError(f"{photos}: no such folder of photos for --data synth; pass --photos")
        # A training scene stands for a crop of a 1280x720 frame (as the paper's 256-px GOPRO
        # crops do), so blur keeps its full-frame extent (2-40 px) instead of shrinking with
        # the crop; otherwise the model never sees the blur sizes of the 1280x720 test split.
        # Validation renders whole 1280x720 frames: what the model is used on.
        synth_cfg = SynthConfig(scale_with_size=False)
        if cfg.synth_render == "frame":  # trains on crops of whole frames of this camera
            synth_cfg = camera_config(cfg.synth_camera)
        train_set = data.SynthDataset(
            photos,
            cfg.synth_length,
            frames=cfg.frames,
            size=cfg.crop,
            seed=cfg.seed,
            cfg=synth_cfg,
            cache=cfg.synth_cache,
        )
        val_set = data.SynthDataset(
            photos,
            cfg.val_count,
            frames=cfg.frames,
            size=cfg.frame_size,
            seed=cfg.seed + VAL_SEED_OFFSET,
            augment=False,
            cfg=synth_cfg,
            cache=True,  # the same frames at every validation: rendered once
        )
        return train_set, val_set

    root = Path(cfg.data)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder; --data takes a GOPRO-layout folder or 'synth'")
    extra: dict[str, Any] = {"cache_dir": run.depth_cache, "progress": progress}
    if cfg.task == "baseline":
        extra["require_depth"] = False
    elif cfg.task != "depth" and cfg.depth_model not in (EXACT_DEPTH, DEGRADED_DEPTH):
        extra["depth_estimator"] = depth_estimator

    def make() -> tuple[Dataset, Dataset]:
        train_set = data.PairedFolderDataset(
            root,
            split="train",
            frames=cfg.frames,
            crop=cfg.crop,
            seed=cfg.seed,
            cache_frames=cfg.synth_cache,
            crop_bias=cfg.crop_bias,
            **extra,
        )
        test_set = data.PairedFolderDataset(
            root, split="test", frames=cfg.frames, crop=None, augment=False, seed=cfg.seed, **extra
        )
        n = len(test_set)
        picks = sorted(
            {round(i * (n - 1) / max(1, cfg.val_count - 1)) for i in range(cfg.val_count)}
        )
        return train_set, Subset(test_set, picks[:n])

    if info.enabled and not info.is_main:
        distributed.barrier()  # let rank 0 fill the depth cache first
        return make()
    sets = make()
    distributed.barrier()
    return sets


def build_frame_pool(
    cfg: TrainConfig, run: RunOptions, info: distributed.DistInfo, start_step: int
) -> FramePool:
    """--synth-render frame: crops of whole 1280x720 frames rendered by `run.workers`
    processes (data/render_pool.py). Each rank renders its own scene stream, and a resumed
    run starts after the scene indices the earlier steps could have used."""
    photos = Path(cfg.photos)
    if not photos.is_dir():
        raise InputError(f"{photos}: no such folder of photos for --data synth; pass --photos")
    return FramePool(
        photos,
        frames=cfg.frames,
        crop=cfg.crop,
        seed=cfg.seed + 7_919 * info.rank,
        camera=cfg.synth_camera,
        size=cfg.frame_size,
        workers=run.workers,
        pool_frames=cfg.pool_frames,
        crops_per_frame=cfg.crops_per_frame,
        crop_bias=cfg.crop_bias,
        start_index=start_step * cfg.batch_size,
    )


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The visiting order of epoch `epoch`: a permutation seeded by (seed, epoch) only."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7_919 + 12_345) % 2**63)
    return torch.randperm(n, generator=g)


def step_batches(
    dataset: Dataset,
    cfg: TrainConfig,
    start_step: int,
    rank: int = 0,
    world_size: int = 1,
    workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """This rank's batches for steps start_step .. cfg.steps - 1, in a resumable order.

    Each epoch is a permutation seeded by (seed, epoch), cut into global batches of
    batch_size * world_size (the last partial one dropped); rank r takes slice r of each.
    One DataLoader per epoch, so datasets with `set_epoch` vary their crops per epoch.
    """
    n, b = len(dataset), cfg.batch_size
    global_batch = b * world_size
    steps_per_epoch = n // global_batch
    if steps_per_epoch == 0:
        raise InputError(
            f"the training set has {n} items, fewer than one global batch of {global_batch}"
        )
    step = start_step
    while step < cfg.steps:
        epoch, offset = divmod(step, steps_per_epoch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        order = epoch_permutation(n, cfg.seed, epoch).tolist()
        count = min(steps_per_epoch - offset, cfg.steps - step)
        plan = [
            order[
                (offset + i) * global_batch + rank * b : (offset + i) * global_batch
                + (rank + 1) * b
            ]
            for i in range(count)
        ]
        loader = DataLoader(
            dataset,
            batch_sampler=plan,
            num_workers=workers,
            pin_memory=pin_memory,
            # Worker seeds come from this generator, never from the global RNG.
            generator=torch.Generator().manual_seed(cfg.seed + epoch),
        )
        yield from loader
        step += count


def to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return {
        k: v.to(device, non_blocking=True).contiguous(memory_format=fmt)
        if isinstance(v, torch.Tensor) and v.dim() == 4
        else v
        for k, v in batch.items()
    }


# --- checkpoints ---------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """torch, CUDA, numpy and python RNG states as plain tensors/ints (weights_only-loadable)."""
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "state": torch.tensor(py_state), "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(x) for x in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(Exception):
            torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, model: nn.Module, optimizer, cfg: TrainConfig, **extra) -> None:
    """Atomically write the full training state as plain tensors, dicts and numbers."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": cfg.to_json(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
        **extra,
    }
    train_checkpoint.write(path, payload)  # with its sha256; the previous one kept as .prev


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a training checkpoint (weights_only: no arbitrary objects are unpickled) and verify
    its stored sha256; CheckpointError naming the file on any mismatch."""
    return train_checkpoint.read(path, CHECKPOINT_FORMAT)


RESUMABLE_CHANGES = ("steps", "time_budget")


def merge_resume_config(stored: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """The stored recipe with the options given again on the command line.

    Only `steps` and `time_budget` may change on resume (they move the end of the schedule);
    any other option that differs from the stored run is an error, so a resumed run is the run
    it claims to be.
    """
    changes = {}
    for key, value in overrides.items():
        old = getattr(stored, key)
        if isinstance(old, tuple):
            value = tuple(value)
        if value != old:
            if key not in RESUMABLE_CHANGES:
                raise TrainingError(
                    f"--{key.replace('_', '-')} {value} differs from the run being resumed "
                    f"({old}); drop it, or start a new run with another --out"
                )
            changes[key] = value
    return dataclasses.replace(stored, **changes) if changes else stored


# --- the run directory's log ---------------------------------------------------------------


class JsonLog:
    """RUNDIR/log.jsonl: one JSON object per line, each with at least `step` and `loss`."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def truncate_after(self, step: int) -> None:
        """On resume, drop lines a crashed run wrote past the checkpoint it resumes from."""
        if not (self.enabled and self.path.exists()):
            return
        kept = []
        for line in self.path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError, TypeError):
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
        write_text_atomic(self.path, "".join(f"{line}\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")


# --- Ctrl-C ----------------------------------------------------------------------------------


class StopFlag:
    """SIGINT/SIGTERM set a flag the loop checks after each step; a second SIGINT aborts."""

    def __init__(self, install: bool):
        self.requested = False
        self._previous: dict[int, Any] = {}
        self._install = install and threading.current_thread() is threading.main_thread()

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopFlag:
        if self._install:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# --- validation ----------------------------------------------------------------------------


@torch.no_grad()
def validate(
    model: nn.Module,
    dataset: Dataset,
    cfg: TrainConfig,
    estimator: nn.Module | None,
    device: torch.device,
    precision: str,
    info: distributed.DistInfo,
) -> dict[str, float]:
    """Mean PSNR/SSIM (0-255, see metrics.py) of the restored image against the sharp one, or
    depth RMSE for the depth task; `loss` is the mean content (or depth) MSE. Each rank
    evaluates its share of the validation items; the sums are reduced over ranks."""
    model.eval()
    indices = list(range(len(dataset)))[info.rank :: info.world_size]
    sums = torch.zeros(4, dtype=torch.float64)  # loss, psnr or rmse, ssim, count
    for i in indices:
        batch = to_device(
            {k: v.unsqueeze(0) for k, v in dataset[i].items() if isinstance(v, torch.Tensor)},
            device,
            False,
        )
        with devices.autocast(device, devices.PRECISIONS[precision]):
            if cfg.task == "depth":
                pred = model((batch["blur"][:, :3].float() + 1) / 2).float()
                mse = (pred - batch["depth"]).pow(2).mean().item()
                sums += torch.tensor([mse, math.sqrt(mse), 0.0, 1.0], dtype=torch.float64)
                continue
            if cfg.depth_model == DEGRADED_DEPTH and cfg.task not in ("baseline", "depth"):
                # A fixed degradation per validation item, so runs are comparable.
                gen = torch.Generator().manual_seed(VAL_DEGRADE_SEED + i)
                batch["depth_init"] = degrade_depth(batch["depth"], gen)
            out = model(batch["blur"], initial_depth(batch, cfg, estimator))
        image = out.image.float()
        mse = (image - batch["sharp"]).pow(2).mean().item()
        # On the device: SSIM's float64 window sums over a 1280x720 frame take seconds on a CPU.
        restored, sharp = to_255(image), to_255(batch["sharp"])
        sums += torch.tensor(
            [mse, psnr(restored, sharp).item(), ssim(restored, sharp).item(), 1.0],
            dtype=torch.float64,
        )
    model.train()
    sums = distributed.all_reduce_sum(sums.to(device)).cpu()
    n = max(1.0, sums[3].item())
    if cfg.task == "depth":
        return {"loss": sums[0].item() / n, "depth_rmse": sums[1].item() / n, "count": int(n)}
    return {
        "loss": sums[0].item() / n,
        "psnr": sums[1].item() / n,
        "ssim": sums[2].item() / n,
        "count": int(n),
    }


# --- export --------------------------------------------------------------------------------


def export_path(run: RunOptions) -> Path | None:
    """Where `--export NAME` writes: EXPORT_DIR/NAME.safetensors (default: the registry's
    weights/ folder, whose manifest.json gets the entry)."""
    if run.export is None:
        return None
    from dgn_cli import registry

    registry.check_name(run.export)  # a name, never a path (checked before training starts)
    folder = Path(run.export_dir) if run.export_dir is not None else registry.weights_dir()
    registry.check_manifest(folder / registry.MANIFEST_NAME)  # readable now, not after hours
    return folder / f"{run.export}.safetensors"


def export_weights(
    model: nn.Module, cfg: TrainConfig, run: RunOptions, summary: dict[str, Any]
) -> dict[str, Any]:
    """Write the final weights as safetensors (config in the metadata) and add or replace the
    registry entry (config, sha256, size, training data, steps, wall time, metrics) in the
    manifest beside the file. An existing entry's licence/input/output/notes are kept."""
    import copy

    from dgn_cli import checkpoints, registry

    path = export_path(run)
    assert path is not None
    dtype = torch.float16 if run.export_dtype == "fp16" else None
    metadata = {"train_config": cfg.to_json(), "steps": str(summary["step"]), "data": cfg.data}
    if cfg.task == "depth":
        net = copy.deepcopy(model).to(dtype) if dtype is not None else model
        checkpoints.save_depth_net(net, path, metadata=metadata)
        kind, architecture = "depth", "SmallDepthNet"
    else:
        checkpoints.save_dgn(model, path, metadata=metadata, dtype=dtype)
        kind, architecture = "dgn", "DGN"
    digest = checkpoints.sha256_file(path)

    manifest = path.parent / registry.MANIFEST_NAME
    try:
        old = registry.load_manifest(manifest).get(run.export)
    except DgnError:
        old = None
    entry = old.to_dict() if old is not None and old.kind == kind else {}
    entry.update(
        {
            "name": run.export,
            "kind": kind,
            "architecture": architecture,
            "config": json.loads(model.config.to_json()),
            "source": {"file": path.name},
            "sha256": digest,
            "size": path.stat().st_size,
            "status": "trained",
            "training": {
                "task": cfg.task,
                "data": cfg.data,
                "steps": summary["step"],
                "wall_time_s": round(summary["wall_time_s"], 1),
                "world_size": summary["world_size"],
                "device": summary["device"],
                "precision": summary["precision"],
                "hardware": summary.get("hardware"),
                **({"time_budget_s": cfg.time_budget} if cfg.time_budget > 0 else {}),
                "metrics": summary.get("val", {}),
                "dtype": run.export_dtype,
                "recipe": json.loads(cfg.to_json()),
            },
        }
    )
    entry.setdefault("licence", "MIT")
    registry.add_manifest_entry(entry, manifest=manifest)
    return {"path": str(path), "sha256": digest, "manifest": str(manifest)}


# --- the loop ------------------------------------------------------------------------------


def _reason(e: BaseException) -> str:
    """The first line of an exception, for a log record."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200] if text else ''}"


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

    # 1. Where we start: a fresh run, or the checkpoint's recipe, weights and RNG states.
    payload = None
    if resume:
        payload = load_checkpoint(ckpt_path)
        cfg = merge_resume_config(TrainConfig.from_json(payload["config"]), resume_overrides)
    elif ckpt_path.exists():
        raise TrainingError(
            f"{ckpt_path} exists; pass --resume to continue that run or choose another --out"
        )
    target = export_path(run)
    if target is not None and target.exists() and not run.overwrite_export:
        raise OutputError(f"{target} exists; pass --overwrite to replace it or pick another name")

    # 2. Model and optimiser, seeded identically on every rank.
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)
    model = build_model(cfg).to(device)
    optimizer = build_optimizer(model, cfg)
    start_step, wall_before, last_val, last_loss = 0, 0.0, {}, math.nan
    init_from: Path | None = None
    if payload is not None:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        set_rng_state(payload["rng"])
        start_step = int(payload["step"])
        wall_before = float(payload.get("wall_time_s", 0.0))
        last_val = dict(payload.get("val", {}))
        last_loss = float(payload.get("loss", math.nan))
        log.truncate_after(start_step)
    elif cfg.init:
        init_from = load_init_weights(model, cfg.init)
    budget = None
    if cfg.time_budget > 0:
        val_every = train_budget.VAL_EVERY_FRACTION if run.val_every > 0 else 0.0
        budget = train_budget.TimeBudget(cfg.time_budget, wall_before, val_every)
    start_health = health_record(model)
    check_health(start_health, cfg, start_step, ckpt_path)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = EMA(model, cfg.ema) if cfg.ema > 0 else None
    if ema is not None and payload is not None and "ema" in payload:
        ema.load_state_dict(payload["ema"])
    eval_model = ema.shadow if ema is not None else model  # what is validated and exported

    # 3. Loss (VGG-19 for the perceptual term), frozen depth estimator, data.
    loss_fn = build_loss(cfg, run, device)
    estimator = load_frozen_depth(cfg, device)
    if channels_last:
        loss_fn = loss_fn.to(memory_format=torch.channels_last)
        if estimator is not None:
            estimator = estimator.to(memory_format=torch.channels_last)

    def cache_progress(done: int, total: int) -> None:
        emit({"event": "depth_cache", "step": start_step, "done": done, "total": total})

    train_set, val_set = datasets or build_datasets(cfg, run, estimator, info, cache_progress)
    pool = None  # --synth-render frame: crops of whole frames rendered by worker processes
    if datasets is None and cfg.data == "synth" and cfg.synth_render == "frame":
        pool = build_frame_pool(cfg, run, info, start_step)
        batches: Iterator[dict[str, torch.Tensor]] = iter(())
    else:
        batches = step_batches(
            train_set,
            cfg,
            start_step,
            info.rank,
            info.world_size,
            run.workers,
            pin_memory=device.type == "cuda",
        )

    # 4. DDP and compile wrap the module used for training steps; `model` stays the plain one.
    step_model: nn.Module = model
    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        step_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    eager_model = step_model
    compile_pending = False  # compiled, and the first compiled step has not run yet
    if run.compile:
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
        try:
            step_model, compile_pending = torch.compile(step_model), True
        except Exception as e:  # no compiler backend for this platform
            fallback = {"event": "compile_fallback", "step": start_step, "reason": _reason(e)}
            log.write(fallback)
            emit(fallback)

    def forward_loss(net: nn.Module, batch: dict[str, torch.Tensor]):
        with devices.autocast(device, devices.PRECISIONS[precision]):
            if cfg.task == "depth":
                pred = net((centre_frame(batch["blur"], 1) + 1) / 2)
                return loss_fn(pred, batch["depth"])
            depth_b = initial_depth(batch, cfg, estimator)
            output = net(batch["blur"], depth_b)
            return loss_fn(output.image, batch["sharp"], output.depth, batch["depth"])

    def save(step: int, **extra) -> None:
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise TrainingError(
                f"the weights became non-finite by step {step}; the last good checkpoint "
                f"{ckpt_path} is kept; try --precision fp32 or a lower --lr"
            )
        if info.is_main:
            save_checkpoint(
                ckpt_path,
                model,
                optimizer,
                cfg,
                step=step,
                wall_time_s=wall_before + time.perf_counter() - t_start,
                val=last_val,
                loss=last_loss,
                **({"ema": ema.state_dict()} if ema is not None else {}),
                **extra,
            )
            emit({"event": "checkpoint", "step": step, "path": str(ckpt_path)})

    if budget is not None and isinstance(val_set, SynthDataset):
        # Render the validation frames now, outside the budget (setup_s), so a validation's
        # time inside the budget is the model's alone and the reserve for the last one holds.
        for i in range(info.rank, len(val_set), info.world_size):
            val_set[i]
    global_batch = cfg.batch_size * info.world_size
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    emit(
        {
            "event": "start",
            "step": start_step,
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
    t_log, steps_since_log = t_start, 0
    wait_log = wait_total = 0.0  # seconds the loop waited for data
    sums: dict[str, torch.Tensor] = {}
    step, interrupted = start_step, False
    model.train()
    with StopFlag(run.handle_signals) as stop, contextlib.ExitStack() as cleanup:
        if pool is not None:
            cleanup.callback(pool.close)
        while step < cfg.steps:
            t_wait = time.perf_counter()
            batch = pool.next_batch(cfg.batch_size) if pool is not None else next(batches, None)
            if batch is None:
                break
            waited = time.perf_counter() - t_wait
            wait_log, wait_total = wait_log + waited, wait_total + waited
            lr = lr_at(step, cfg) if budget is None else math.nan  # budget: set below
            for group in optimizer.param_groups:
                group["lr"] = lr
            if cfg.depth_model == DEGRADED_DEPTH and cfg.task not in ("baseline", "depth"):
                gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
                batch["depth_init"] = degrade_depth(batch["depth"], gen)
            if pool is not None:
                batch = batch_to_device(batch, device, channels_last)
            else:
                batch = to_device(batch, device, channels_last)

            if compile_pending:
                # torch.compile fails at the first call when it cannot compile (no C++
                # compiler, no Triton, an unsupported op): train on, uncompiled.
                try:
                    loss, terms = forward_loss(step_model, batch)
                except Exception as e:
                    step_model = eager_model
                    fallback = {"event": "compile_fallback", "step": step, "reason": _reason(e)}
                    log.write(fallback)
                    emit(fallback)
                    loss, terms = forward_loss(step_model, batch)
                compile_pending = False
            else:
                loss, terms = forward_loss(step_model, batch)

            # One small collective per step keeps ranks in lock step on a stop or a bad loss.
            # flags: non-finite loss, stop requested, the time budget is spent (this step is
            # the last), a budget validation is due, the budget's progress (for the lr). All
            # ranks agree on them (their clocks differ slightly; the max wins).
            flags = loss.detach().new_zeros(5, dtype=torch.float32)
            flags[0] = (~torch.isfinite(loss.detach())).float()
            flags[1] = float(stop.requested)
            flags[2] = float(budget is not None and budget.should_stop())
            flags[3] = float(budget is not None and budget.validation_due())
            flags[4] = budget.progress() if budget is not None else 0.0
            if info.enabled:
                torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
            if budget is not None:
                lr = train_budget.lr_at_fraction(flags[4].item(), cfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr
            if flags[0].item() > 0:
                kept = (
                    f"the last good checkpoint {ckpt_path} is kept"
                    if ckpt_path.exists()
                    else ("no checkpoint was written yet")
                )
                raise TrainingError(
                    f"the loss became non-finite at step {step} (lr {lr:.3g}, precision "
                    f"{precision}); {kept}; try --precision fp32 or a lower --lr"
                )

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                sums["grad_norm"] = sums.get("grad_norm", 0.0) + grad_norm.detach().float()
            optimizer.step()
            if ema is not None:
                ema.update(model)
            step += 1
            steps_since_log += 1
            done = step == cfg.steps or flags[2].item() > 0
            for name, value in {"loss": loss, **terms}.items():
                sums[name] = sums.get(name, 0.0) + value.detach().float()

            # Log, validate, checkpoint, stop.
            if step % run.log_every == 0 or done:
                names = sorted(sums)
                values = distributed.all_reduce_sum(torch.stack([sums[n] for n in names]))
                values = (values / (steps_since_log * info.world_size)).tolist()
                now = time.perf_counter()
                rate = steps_since_log * global_batch / max(now - t_log, 1e-9)
                record = {"event": "train", "step": step, "lr": lr}
                record.update(
                    {
                        n if n in ("loss", "grad_norm") else f"loss_{n}": v
                        for n, v in zip(names, values, strict=True)
                    }
                )
                record["samples_per_s"] = rate
                record["data_wait_fraction"] = wait_log / max(now - t_log, 1e-9)
                if budget is not None:
                    record["budget_fraction"] = budget.fraction()
                    record["eta_s"] = budget.remaining()
                else:
                    record["eta_s"] = (cfg.steps - step) * global_batch / rate
                record.update(health_record(model))
                last_loss = record["loss"]
                log.write(record)
                emit(record)
                t_log, steps_since_log, sums, wait_log = now, 0, {}, 0.0
                check_health(record, cfg, step, ckpt_path)
                watch.check(record["loss"], step, ckpt_path)
            if budget is not None:
                val_due = done or flags[3].item() > 0
            else:
                val_due = done or (run.val_every > 0 and step % run.val_every == 0)
            if val_due:
                t_val = time.perf_counter()
                last_val = validate(eval_model, val_set, cfg, estimator, device, precision, info)
                if budget is not None:
                    budget.timed_validation(time.perf_counter() - t_val)
                    budget.validated()
                val_record = {"event": "val", "step": step, **last_val}
                log.write(val_record)
                emit(val_record)
            if flags[1].item() > 0:
                interrupted = True
                save(step)
                break
            if step % run.ckpt_every == 0 or done:
                save(step)
            if done:
                break

    # 6. The end: every rank reports a digest of its weights (they must agree under DDP).
    wall = wall_before + time.perf_counter() - t_start
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
        "data_wait_fraction": wait_total / max(time.perf_counter() - t_start, 1e-9),
        **({"time_budget_s": cfg.time_budget} if budget is not None else {}),
        **(pool.stats() if pool is not None else {}),
        "rank_digests": digests,
        "ranks_in_sync": len(set(digests)) == 1,
    }
    if step == start_step and info.is_main and not ckpt_path.exists():
        save(step)  # a zero-step run still leaves a resumable checkpoint
    if run.export and not interrupted and info.is_main:
        summary["export"] = export_weights(eval_model, cfg, run, summary)
    log.write(summary)
    emit(summary)
    distributed.barrier()
    return summary
