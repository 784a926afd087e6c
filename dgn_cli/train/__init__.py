"""Training: the paper's recipe (Sec. V-A), resumable, mixed precision, DDP.

    from dgn_cli.train import RunOptions, recipe_config, train
    summary = train(recipe_config("fast", steps=20_000), RunOptions(out=Path("runs/image")))

Modules, each one concern:

    config       TrainConfig (the recipe, stored in every checkpoint), RECIPES, RunOptions (how
                 this invocation runs it), merge_resume_config (what a resume may change)
    loop         train(): read it top to bottom
    optim        AdamW with decay on conv weights only; lr_at(step): Eq. 10 or warm-up + cosine
    budget       --time-budget: the schedule, validation and the end follow the clock
    model        the network, its losses, the frozen estimator and the initial depth D_b
    datasets     synthetic or GOPRO-layout training and validation data, the frame pool
    data_order   step_batches: a step's samples are a pure function of (seed, step)
    state        RNG states, the checkpoint, the log, the Ctrl-C flag
    checkpoint   checkpoint files with a checksum inside, the previous one kept
    step         the module a step calls (DDP, torch.compile) and the flags ranks agree on
    meter        the log's train records (mean loss terms, throughput, ETA)
    health       what stops a run going wrong (dead units, divergence, non-finite values)
    validate     PSNR/SSIM (depth RMSE) on the validation set
    export       --export: the final weights and their registry entry

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
  only (see devices.resolve_precision). Parameters and batches are channels-last (NHWC) on
  CUDA and CPU, measured faster on both.
- The loss is checked every step: a non-finite value stops training before the optimiser
  applies it, and the last checkpoint on disk (always a finite one) is kept.
- SIGINT / SIGTERM finish the current step, write the checkpoint and stop (the CLI exits 130);
  a second Ctrl-C aborts at once.
"""

from dgn_cli.train.config import (
    RECIPES,
    TASKS,
    RunOptions,
    TrainConfig,
    TrainingError,
    merge_resume_config,
    recipe_config,
)
from dgn_cli.train.data_order import epoch_permutation, step_batches
from dgn_cli.train.datasets import build_datasets
from dgn_cli.train.export import export_path, export_weights
from dgn_cli.train.health import DivergenceWatch
from dgn_cli.train.loop import train
from dgn_cli.train.model import build_model, initial_depth, load_init_weights
from dgn_cli.train.optim import build_optimizer, decay_parameter_names, lr_at
from dgn_cli.train.state import load_checkpoint, save_checkpoint
from dgn_cli.train.validate import validate

__all__ = [
    "RECIPES",
    "TASKS",
    "DivergenceWatch",
    "RunOptions",
    "TrainConfig",
    "TrainingError",
    "build_datasets",
    "build_model",
    "build_optimizer",
    "decay_parameter_names",
    "epoch_permutation",
    "export_path",
    "export_weights",
    "initial_depth",
    "load_checkpoint",
    "load_init_weights",
    "lr_at",
    "merge_resume_config",
    "recipe_config",
    "save_checkpoint",
    "step_batches",
    "train",
    "validate",
]
