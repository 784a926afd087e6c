"""Validation during training: mean PSNR/SSIM of the restored frames (depth RMSE for the depth
task) over the validation set, shared out over the ranks."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import Dataset

from dgn_cli import devices, distributed
from dgn_cli.metrics import psnr, ssim, to_255
from dgn_cli.tensors import centre_frame, to_unit
from dgn_cli.train.config import TrainConfig
from dgn_cli.train.data_order import to_device
from dgn_cli.train.model import add_degraded_depth, initial_depth

VAL_DEGRADE_SEED = 424_242


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
                pred = model(to_unit(centre_frame(batch["blur"], cfg.frames).float())).float()
                mse = (pred - batch["depth"]).pow(2).mean().item()
                sums += torch.tensor([mse, math.sqrt(mse), 0.0, 1.0], dtype=torch.float64)
                continue
            # A fixed degradation per validation item, so runs are comparable.
            add_degraded_depth(batch, cfg, VAL_DEGRADE_SEED + i)
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
