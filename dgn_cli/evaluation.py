"""One evaluation loop for training validation (`train.validate`) and `dgn benchmark --dataset`
(`benchmark.quality.evaluate`): score every item, then average each score over the items.

    means = {"val": Means(("loss", "psnr", "ssim"))}
    per_item = score_items(indices, score_item, means)   # score_item(i) -> {"val": {...}}
    means["val"].mean("psnr")

Each image is scored on its own and the scores are averaged over the images (the GOPRO
convention). A score of None (e.g. an empty depth third) is left out of its mean and count.
Sums are float64 in item order, so the sums of all ranks (`Means.all_reduce`) give the means
over all items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch

from dgn_cli import distributed, metrics
from dgn_cli.progress import Progress

Scores = Mapping[str, float | None]


def image_scores(pred255: torch.Tensor, sharp255: torch.Tensor) -> dict[str, float]:
    """PSNR (dB) and SSIM of one restored image against its sharp one: (1, 3, H, W) each,
    0-255 (see metrics.py for the convention)."""
    return {
        "psnr": float(metrics.psnr(pred255, sharp255)[0]),
        "ssim": float(metrics.ssim(pred255, sharp255)[0]),
    }


class Means:
    """Running means of named scores over items."""

    def __init__(self, keys: Iterable[str] = ()):
        self.sums: dict[str, float] = dict.fromkeys(keys, 0.0)
        self.counts: dict[str, int] = dict.fromkeys(keys, 0)
        self.items = 0  # items added, whatever their scores

    def add(self, scores: Scores) -> None:
        self.items += 1
        for key, value in scores.items():
            if value is not None:
                self.sums[key] = self.sums.get(key, 0.0) + value
                self.counts[key] = self.counts.get(key, 0) + 1

    def mean(self, key: str) -> float | None:
        """The mean of `key` over the items that have it; None if none has."""
        count = self.counts.get(key, 0)
        return self.sums[key] / count if count else None

    def count(self, key: str) -> int:
        return self.counts.get(key, 0)

    def all_reduce(self, device: torch.device) -> None:
        """Sum over the ranks (each rank added its share of the items; every rank must hold
        the same keys, so create the Means with them). Identity on one process."""
        keys = list(self.sums)
        local = [self.sums[k] for k in keys] + [float(self.counts[k]) for k in keys]
        local.append(float(self.items))
        total = distributed.all_reduce_sum(torch.tensor(local, dtype=torch.float64).to(device))
        total = total.cpu().tolist()
        self.sums = dict(zip(keys, total[: len(keys)], strict=True))
        self.counts = {k: int(c) for k, c in zip(keys, total[len(keys) : -1], strict=True)}
        self.items = int(total[-1])


def score_items(
    indices: Sequence[int],
    score_item: Callable[[int], Mapping[str, Scores]],
    means: dict[str, Means],
    progress: Progress | None = None,
) -> list[Mapping[str, Scores]]:
    """Score the items `indices` in order. score_item(i) gives scores by group, e.g. one
    group per model evaluated ({"refined depth": {"psnr": ..., "ssim": ...}, ...}); each
    group's scores are added to means[group] (created when new). Returns every item's
    scores; progress(done, total) after each item."""
    per_item = []
    for n, i in enumerate(indices):
        scores = score_item(i)
        for group, values in scores.items():
            means.setdefault(group, Means()).add(values)
        per_item.append(scores)
        if progress is not None:
            progress(n + 1, len(indices))
    return per_item
