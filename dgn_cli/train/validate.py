"""Validation during training: mean PSNR/SSIM of the restored frames (depth RMSE and Pearson
correlation for the depth task) over the validation set, shared out over the ranks."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import Dataset

from dgn_cli import devices, distributed
from dgn_cli.benchmark.quality import pearson
from dgn_cli.evaluation import Means, image_scores, score_items
from dgn_cli.metrics import to_255
from dgn_cli.models.depth.estimator import small_depth
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

    def score(i: int) -> dict[str, dict[str, float]]:
        batch = to_device(
            {k: v.unsqueeze(0) for k, v in dataset[i].items() if isinstance(v, torch.Tensor)},
            device,
            False,
        )
        with devices.autocast(device, devices.PRECISIONS[precision]):
            if cfg.task == "depth":
                # Whole frames, read as inference reads them (a relative net is normalised).
                image = to_unit(centre_frame(batch["blur"], cfg.frames).float())
                pred = small_depth(model, image).float()
                mse = (pred - batch["depth"]).pow(2).mean().item()
                # Pearson: whether the map carries depth at all (a constant scores 0), which
                # the RMSE alone hides (a good constant has a low RMSE).
                r = pearson(pred, batch["depth"])
                return {"val": {"loss": mse, "depth_rmse": math.sqrt(mse), "depth_pearson": r}}
            # A fixed degradation per validation item, so runs are comparable.
            add_degraded_depth(batch, cfg, VAL_DEGRADE_SEED + i)
            out = model(batch["blur"], initial_depth(batch, cfg, estimator))
        image = out.image.float()
        mse = (image - batch["sharp"]).pow(2).mean().item()
        # On the device: SSIM's float64 window sums over a 1280x720 frame take seconds on a CPU.
        return {"val": {"loss": mse, **image_scores(to_255(image), to_255(batch["sharp"]))}}

    depth_keys = ("loss", "depth_rmse", "depth_pearson")
    keys = depth_keys if cfg.task == "depth" else ("loss", "psnr", "ssim")
    means = {"val": Means(keys)}  # created with its keys: a rank may have no items
    model.eval()
    score_items(list(range(len(dataset)))[info.rank :: info.world_size], score, means)
    model.train()
    val = means["val"]
    val.all_reduce(device)
    n = max(1, val.items)  # an empty validation set reports zeros
    return {**{key: val.sums[key] / n for key in keys}, "count": n}
