"""What a training step runs: the network, its losses, and the initial depth D_b it is given.

    model = build_model(cfg)                       # DGN variant of the task, or SmallDepthNet
    loss_fn, estimator = build_loss(cfg, run, device), load_frozen_depth(cfg, device)
    loss, terms = batch_loss(model, batch, cfg, loss_fn, estimator)

Images are in [-1, 1] (B, 3*frames, H, W); depth in [0, 1], 1 = nearest (B, 1, H, W).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dgn_cli.data.depth_degrade import degrade_depth
from dgn_cli.errors import CheckpointError, InputError
from dgn_cli.losses import DepthLoss, DGNLoss, LossWeights
from dgn_cli.models import DGN, DGNConfig
from dgn_cli.models.depth import SmallDepthConfig, SmallDepthNet
from dgn_cli.tensors import centre_frame, to_unit
from dgn_cli.train.config import NO_ESTIMATOR, TASK_MODEL, RunOptions, TrainConfig


def build_model(cfg: TrainConfig) -> nn.Module:
    """A fresh DGN for the image/video/baseline/concat tasks, SmallDepthNet for depth."""
    try:
        if cfg.task == "depth":
            # Invariant loss or extent target: its answer has no depth level of its own.
            relative = cfg.depth_loss == "invariant" or cfg.depth_target == "extent"
            overrides = {"relative": relative, **cfg.model_overrides}
            return SmallDepthNet(SmallDepthConfig(widths=cfg.depth_widths, **overrides))
        variant, frames = TASK_MODEL[cfg.task]
        return DGN(
            DGNConfig(variant=variant, frames=frames, widths=cfg.widths, **cfg.model_overrides)
        )
    except (TypeError, ValueError) as e:
        raise InputError(f"bad model configuration: {e}") from e


def load_init_weights(model: nn.Module, name_or_path: str, widen: bool = False) -> Path:
    """Start `model` from saved weights (a registry name or a safetensors / .pth file; fine-tuning):
    strict, so a checkpoint of another variant, width or frame count is refused with the first
    mismatching keys. `widen`: weights of narrower widths are embedded function-preservingly
    (models/widen.py) instead of refused. fp16 files are upcast into the fp32 parameters.
    Returns the file used."""
    from dgn_cli import checkpoints
    from dgn_cli.models.widen import widen_state_dict

    path = checkpoints.resolve_checkpoint(name_or_path)
    state = checkpoints.load_state_dict_file(path)
    state = _image_init_for_video(model, state)
    if widen:
        try:
            state = widen_state_dict(state, model)
        except ValueError as e:
            raise CheckpointError(
                f"--init {path}: {e}; --widen grows weights to wider --widths, never narrower"
            ) from None
    try:
        checkpoints.load_state_dict_strict(model, state, str(path))
    except CheckpointError as e:
        hint = "" if widen else " (or narrower ones with --widen)"
        raise CheckpointError(
            f"--init: {e}; --init needs weights of the same task and widths{hint}"
        ) from None
    return path


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
    """DGNLoss (content, perceptual, depth, FFT terms) or, for the depth task, DepthLoss."""
    if cfg.task == "depth":
        return DepthLoss(cfg.lambda_grad, invariant=cfg.depth_loss == "invariant")
    weights = LossWeights(
        cfg.lambda_c, cfg.lambda_p, cfg.lambda_d, cfg.lambda_fft, cfg.loss, cfg.charbonnier_eps
    )
    vgg = load_vgg(run.vgg_weights, device) if cfg.lambda_p > 0 else None
    return DGNLoss(weights, vgg)


def load_frozen_depth(cfg: TrainConfig, device: torch.device) -> nn.Module | None:
    """The frozen estimator that gives D_b (None for the baseline, the depth task, and the
    D_b sources that need none: exact, degraded, parallax)."""
    if cfg.task in ("depth", "baseline") or cfg.depth_model in NO_ESTIMATOR:
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


def add_degraded_depth(batch: dict[str, torch.Tensor], cfg: TrainConfig, seed: int) -> None:
    """--depth-model degraded: batch["depth_init"] := the exact depth with an estimator's kinds
    of error, drawn from `seed` (a pure function of the step or validation item)."""
    if cfg.degraded_depth:
        batch["depth_init"] = degrade_depth(batch["depth"], torch.Generator().manual_seed(seed))


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
    return estimator(to_unit(centre_frame(batch["blur"], cfg.frames).float())).float()


EXTENT_TARGET_PX = 64.0  # --depth-target extent: this blur extent (px) or more maps to 1


def extent_target(extent_px: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) blur extent in px -> the estimator's target in [0, 1], linear in the extent
    (clipped at EXTENT_TARGET_PX, past the test splits' heavy tail of ~40 px). Linear because
    under a translating camera the extent is an affine function of inverse depth, which is
    the depth convention here, so the min-max-normalised answer is read as depth unchanged."""
    return (extent_px / EXTENT_TARGET_PX).clamp(0.0, 1.0)


def batch_loss(
    net: nn.Module,
    batch: dict[str, torch.Tensor],
    cfg: TrainConfig,
    loss_fn: nn.Module,
    estimator: nn.Module | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss, its named terms) of one batch; images in [-1, 1], depth in [0, 1]. The depth
    task sees the blurred centre frame in [0, 1], as the estimator does at inference."""
    if cfg.task == "depth":
        target = extent_target(batch["extent"]) if cfg.depth_target == "extent" else batch["depth"]
        return loss_fn(net(to_unit(centre_frame(batch["blur"], cfg.frames))), target)
    output = net(batch["blur"], initial_depth(batch, cfg, estimator))
    return loss_fn(output.image, batch["sharp"], output.depth, batch["depth"])
