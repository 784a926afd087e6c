"""The evaluation loop shared by training validation and `dgn benchmark --dataset`."""

import math

import pytest
import torch

from dgn_cli import metrics
from dgn_cli.evaluation import Means, image_scores, score_items


def test_means_skip_none_and_count_items():
    m = Means(("psnr",))
    m.add({"psnr": 30.0, "psnr_near": None})
    m.add({"psnr": 32.0, "psnr_near": 20.0})
    assert m.mean("psnr") == 31.0 and m.count("psnr") == 2
    assert m.mean("psnr_near") == 20.0 and m.count("psnr_near") == 1  # the empty third left out
    assert m.items == 2 and m.mean("ssim") is None and m.count("ssim") == 0


def test_all_reduce_on_one_process_keeps_the_sums():
    m = Means(("loss", "psnr"))
    m.add({"loss": 0.25, "psnr": math.inf})  # identical images: PSNR inf
    m.all_reduce(torch.device("cpu"))
    assert m.sums == {"loss": 0.25, "psnr": math.inf} and m.counts == {"loss": 1, "psnr": 1}
    assert m.items == 1
    empty = Means(("loss",))  # a rank without items still takes part, with its keys
    empty.all_reduce(torch.device("cpu"))
    assert empty.items == 0 and empty.mean("loss") is None


def test_score_items_groups_scores_in_order_and_reports_progress():
    means = {"a": Means()}
    done = []
    per_item = score_items(
        [3, 5],
        lambda i: {"a": {"x": float(i)}, **({"b": {"y": 1.0}} if i == 5 else {})},
        means,
        progress=lambda n, total: done.append((n, total)),
    )
    assert [s["a"]["x"] for s in per_item] == [3.0, 5.0] and done == [(1, 2), (2, 2)]
    assert means["a"].mean("x") == 4.0 and means["b"].items == 1  # a new group is created


def test_image_scores_are_the_metrics_of_one_image():
    g = torch.Generator().manual_seed(0)
    sharp = torch.randint(0, 256, (1, 3, 16, 16), generator=g).double()
    pred = (sharp + torch.randint(-3, 4, sharp.shape, generator=g)).clamp(0, 255)
    scores = image_scores(pred, sharp)
    assert scores["psnr"] == pytest.approx(float(metrics.psnr(pred, sharp)[0]))
    assert scores["ssim"] == pytest.approx(float(metrics.ssim(pred, sharp)[0]))
