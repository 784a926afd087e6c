"""The batches of each step: the resumable data order, where a step's samples are a pure
function of (seed, step), and the feed the loop takes them from.

    for batch in step_batches(train_set, cfg, start_step, rank, world_size, workers):
        batch = to_device(batch, device, channels_last=True)
    feed = BatchFeed(cfg, train_set, pool, start_step, info, workers, device, True)

Every epoch visits the data in the order of a permutation seeded by (seed, epoch), so resuming
at step N replays nothing and skips nothing; with torchrun each rank takes its own slice of
every global batch (the shards never overlap).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from dgn_cli import distributed
from dgn_cli.data.render_pool import FramePool, batch_to_device
from dgn_cli.errors import InputError
from dgn_cli.train.config import TrainConfig


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
    """Move a batch's (B, C, H, W) tensors to `device` in the given memory format."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return {
        k: v.to(device, non_blocking=True).contiguous(memory_format=fmt)
        if isinstance(v, torch.Tensor) and v.dim() == 4
        else v
        for k, v in batch.items()
    }


class BatchFeed:
    """This rank's batch for each step: from `pool` (--synth-render frame: crops of whole
    rendered frames, uint8 until they reach the device) or else from step_batches."""

    def __init__(
        self,
        cfg: TrainConfig,
        train_set: Dataset,
        pool: FramePool | None,
        start_step: int,
        info: distributed.DistInfo,
        workers: int,
        device: torch.device,
        channels_last: bool,
    ):
        self.batch_size, self.pool = cfg.batch_size, pool
        self.device, self.channels_last = device, channels_last
        if pool is None:
            pin = device.type == "cuda"
            self.order = step_batches(
                train_set, cfg, start_step, info.rank, info.world_size, workers, pin_memory=pin
            )

    def next(self) -> dict[str, torch.Tensor] | None:
        """The next batch, on the host; None when the data order ends."""
        if self.pool is not None:
            return self.pool.next_batch(self.batch_size)
        return next(self.order, None)

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.pool is not None:
            return batch_to_device(batch, self.device, self.channels_last)
        return to_device(batch, self.device, self.channels_last)
