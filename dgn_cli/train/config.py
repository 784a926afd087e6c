"""The recipe (`TrainConfig`, the named `RECIPES`), how one invocation runs it (`RunOptions`),
and which options a resume may change (`merge_resume_config`).

    cfg = recipe_config("fast", steps=20_000)       # the recipe's values, then the overrides
    cfg = merge_resume_config(stored, {"steps": 40_000})
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dgn_cli.errors import DgnError, InputError
from dgn_cli.jsonconfig import JsonConfig

TASKS = ("image", "video", "baseline", "concat", "depth")
TASK_MODEL = {  # task -> (DGN variant, frames)
    "image": ("dgn", 1),
    "video": ("dgn", 5),
    "baseline": ("baseline", 1),
    "concat": ("concat", 1),
}
EXACT_DEPTH = "exact"
DEGRADED_DEPTH = "degraded"  # exact depth with an estimator's kinds of error (data/depth_degrade)
PARALLAX_DEPTH = "parallax"  # video: each window's motion parallax (data/parallax_cache)
NO_ESTIMATOR = (EXACT_DEPTH, DEGRADED_DEPTH, PARALLAX_DEPTH)  # D_b sources that need no network
VAL_FRAME_SIZE = (1280, 720)  # --data synth validates on whole frames of the test split's size


class TrainingError(DgnError):
    """Training cannot go on (non-finite loss, a run directory in the way, a bad resume)."""


@dataclass(frozen=True)
class TrainConfig(JsonConfig):
    """The recipe. Paper values are the defaults (batch 4, 256 crops, Adam 0.9/0.99, wd 1e-4,
    lr 1e-4 then linear to 1e-6 over the second half, lambda_c 1, lambda_p 0.01, lambda_d 1).
    The default 315,000 steps are the paper's 600 epochs of GOPRO's 2,103 pairs at batch 4."""

    task: str = "image"
    data: str = "synth"  # "synth" or a GOPRO-layout folder
    # folder data: more GOPRO-layout folders whose train splits join data's (e.g. two kinds of
    # blur); validation stays data's test split
    extra_data: tuple[str, ...] = ()
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
    depth_loss: str = "absolute"  # depth task only: absolute | invariant (losses.DepthLoss)
    # depth task only: what the estimator learns to output. depth: the reference depth.
    # extent: the renderer's per-pixel blur extent (extent/ maps; train/model.extent_target),
    # a local quantity a crop can read from its own pixels; the net is then relative (its
    # whole-frame answer min-max normalised), and is validated against the reference depth.
    depth_target: str = "depth"
    widths: tuple[int, ...] = (32, 64, 128)  # DGN widths; the depth task uses depth_widths
    depth_widths: tuple[int, ...] = (16, 32, 64, 128)
    model_overrides: dict = field(default_factory=dict)  # extra DGNConfig / SmallDepthConfig fields
    depth_model: str = "dgn-depth-small"  # frozen estimator for D_b; "exact" = exact depth
    seed: int = 0
    synth_length: int = 100_000  # index range of the synthetic training set
    synth_cache: bool = False  # keep rendered scenes / decoded frames in memory (many epochs)
    val_count: int = 16  # validation images
    init: str | None = None  # weights to start from (fine-tuning): registry name or file
    widen: bool = False  # init weights narrower than `widths` grow to them (models/widen.py)
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
    jpeg: float = 0.0  # share of training inputs JPEG-compressed (quality 60-95; augment.py)
    grad_clip: float = 0.0  # clip the global gradient norm to this (0 = off)
    divergence: float = 0.0  # stop when the logged loss stays above this x its best (0 = off)
    # Budgeted runs and whole-frame synthetic data (train/budget.py, data/render_pool.py):
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
        if self.depth_loss not in ("absolute", "invariant"):
            raise InputError(
                f"unknown depth loss {self.depth_loss!r}; choose absolute or invariant"
            )
        if self.depth_target not in ("depth", "extent"):
            raise InputError(f"unknown depth target {self.depth_target!r}; choose depth or extent")
        if self.depth_target != "depth" and self.task != "depth":
            raise InputError(
                f"--depth-target {self.depth_target} is for --task depth (the estimator), "
                f"not --task {self.task}"
            )
        if self.schedule not in ("paper", "cosine"):
            raise InputError(f"unknown schedule {self.schedule!r}; choose paper or cosine")
        if self.synth_render not in ("scene", "frame"):
            raise InputError(f"unknown synth render {self.synth_render!r}; choose scene or frame")
        if self.time_budget < 0:
            raise InputError(f"--time-budget must be positive, got {self.time_budget}")
        if not 0 <= self.jpeg <= 1:
            raise InputError(f"--jpeg is a probability in [0, 1], got {self.jpeg}")
        if not 0 <= self.ema < 1:
            raise InputError(f"--ema must be in [0, 1), got {self.ema}")
        for name in ("steps", "batch_size", "crop", "synth_length", "crops_per_frame"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be positive")
        object.__setattr__(self, "frame_size", tuple(int(v) for v in self.frame_size))
        object.__setattr__(self, "extra_data", tuple(str(p) for p in self.extra_data))
        if self.depth_model == PARALLAX_DEPTH and (self.frames < 2 or self.data == "synth"):
            raise InputError(
                "--depth-model parallax reads depth from a window's motion: it needs --task "
                "video and a folder --data (not 'synth')"
            )
        if self.widen and (self.task == "depth" or not self.init):
            raise InputError(
                "--widen grows the --init weights of a DGN (image, video, baseline, concat) to "
                "wider --widths: it needs --init, and the depth estimator cannot be widened"
            )
        if self.extra_data and self.data == "synth":
            raise InputError("--extra-data adds folders to a folder --data, not to 'synth'")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "depth_widths", tuple(int(w) for w in self.depth_widths))

    @property
    def frames(self) -> int:
        return TASK_MODEL[self.task][1] if self.task in TASK_MODEL else 1

    @property
    def degraded_depth(self) -> bool:
        """D_b is exact depth degraded like an estimator's (tasks that take a D_b only)."""
        return self.depth_model == DEGRADED_DEPTH and self.task not in ("baseline", "depth")


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


# Where a recipe's value does not suit one task: (recipe, task) -> fields, applied after the
# recipe and before the command line. The depth estimator (a plain U-Net, no residuals, sigmoid
# head) collapsed to a constant at the DGN's lr 1e-3 (measured: overfitting 8 frames, the output
# saturated within 25 steps at 1e-3 and learned at 1e-4), so its fast recipe steps at 2e-4.
TASK_RECIPES: dict[tuple[str, str], dict[str, Any]] = {
    ("fast", "depth"): {"lr": 2e-4},
}


def recipe_config(name: str, **overrides: Any) -> TrainConfig:
    """TrainConfig of the named recipe with `overrides` (e.g. the command line's) applied;
    the recipe's TASK_RECIPES values for the task come between the two."""
    if name not in RECIPES:
        raise InputError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    task = overrides.get("task", TrainConfig.task)
    return TrainConfig(
        **{**RECIPES[name], "recipe": name, **TASK_RECIPES.get((name, task), {}), **overrides}
    )


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
