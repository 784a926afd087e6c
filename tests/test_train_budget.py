"""`dgn train --time-budget`: the schedule follows the clock, the run ends and exports on time,
resume continues the clock; whole-frame synthetic crops from worker processes; torch.compile
falls back cleanly."""

import json
import time

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dgn_cli.cli import app
from dgn_cli.data.render_pool import FramePool, batch_to_device
from dgn_cli.train import load_checkpoint, train
from dgn_cli.train.budget import TimeBudget, lr_at_fraction
from tests.test_train import cfg, data, run

runner = CliRunner()


def test_lr_follows_the_fraction_of_the_budget():
    c = cfg(schedule="cosine", warmup=0.1, lr=1e-3, lr_final=1e-6)
    assert lr_at_fraction(0.05, c) == pytest.approx(5e-4)
    assert lr_at_fraction(0.1, c) == pytest.approx(1e-3)
    assert lr_at_fraction(0.55, c) == pytest.approx((1e-3 + 1e-6) / 2)
    assert lr_at_fraction(1.0, c) == pytest.approx(1e-6) == lr_at_fraction(2.0, c)
    values = [lr_at_fraction(f / 100, c) for f in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    p = cfg(schedule="paper", lr=1e-4, lr_final=1e-6)
    assert lr_at_fraction(0.4, p) == 1e-4 and lr_at_fraction(1.0, p) == pytest.approx(1e-6)
    assert lr_at_fraction(0.75, p) == pytest.approx((1e-4 + 1e-6) / 2)


def test_budget_clock_validation_points_and_reserve():
    b = TimeBudget(100.0, elapsed_before=30.0)
    assert b.fraction() == pytest.approx(0.3)  # a resumed run starts where the last one ended
    b.before = 51.0
    assert b.validation_due() and b.validation_due()  # pure: asking twice changes nothing
    b.timed_validation(4.0)
    b.validated()
    assert not b.validation_due()  # the next point is 0.75
    b.before = 80.0
    b.validated()
    b.validated()  # after the last point (0.75) there is none: the final one is the caller's
    assert not b.validation_due()
    assert b.reserve() == pytest.approx(1.25 * 4.0 + 1.0)
    b.before = 100.0 - 6.0 + 0.5
    assert not b.validation_due() or b.remaining() > 3 * b.reserve()
    assert b.should_stop() and b.progress() == 1.0  # the last 6 s belong to the final val
    with pytest.raises(ValueError):
        TimeBudget(0)


def test_a_budgeted_run_ends_validates_and_exports_on_time_then_resumes(tmp_path):
    c = cfg(time_budget=3.0, steps=100_000, schedule="cosine", warmup=0.1, lr=1e-3)
    records = []
    weights = tmp_path / "weights"
    t0 = time.perf_counter()
    summary = train(
        c,
        run(tmp_path, val_every=1, export="budget-tiny", export_dir=weights),
        on_event=records.append,
        datasets=data(c),
    )
    took = time.perf_counter() - t0
    assert not summary["interrupted"] and summary["step"] > 3
    assert summary["time_budget_s"] == 3.0 and 2.0 < summary["wall_time_s"] <= 3.5
    assert took < 10.0
    steps = [r for r in records if r["event"] == "train"]
    assert all(0 <= r["data_wait_fraction"] <= 1 for r in steps)
    fractions = [r["budget_fraction"] for r in steps]
    assert fractions == sorted(fractions)
    assert steps[-1]["lr"] == pytest.approx(1e-6, abs=2e-5)  # the schedule reached its end
    vals = [r for r in records if r["event"] == "val"]
    assert vals and vals[-1]["step"] == summary["step"]
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["event"] == "end" and log[-1]["time_budget_s"] == 3.0
    assert any("budget_fraction" in r for r in log)
    entry = json.loads((weights / "manifest.json").read_text())["entries"][0]
    assert entry["training"]["time_budget_s"] == 3.0
    assert entry["training"]["hardware"].startswith("cpu")
    payload = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert payload["wall_time_s"] == pytest.approx(summary["wall_time_s"], abs=0.5)

    # Resume with a larger budget: the clock and the step count continue.
    more = cfg(time_budget=5.0, steps=100_000, schedule="cosine", warmup=0.1, lr=1e-3)
    resumed = train(more, run(tmp_path, val_every=0), resume=True,
                    resume_overrides={"time_budget": 5.0}, datasets=data(more))  # fmt: skip
    assert resumed["step"] > summary["step"]
    assert summary["wall_time_s"] < resumed["wall_time_s"] <= 5.5


def test_frame_pool_crops_whole_frames_towards_blur(photos):
    with FramePool(photos, frames=1, crop=32, size=(128, 64), crops_per_frame=4) as pool:
        batch = pool.next_batch(6)
        assert batch["blur"].shape == (6, 3, 32, 32) and batch["blur"].dtype == torch.uint8
        assert batch["sharp"].shape == (6, 3, 32, 32) and batch["depth"].shape == (6, 1, 32, 32)
        assert pool.frames_received == 2  # 4 crops per frame: 6 crops needed 2 frames
        moved = batch_to_device(batch, torch.device("cpu"), channels_last=True)
        assert moved["blur"].dtype == torch.float32
        assert -1 <= moved["blur"].min() and moved["blur"].max() <= 1
        assert moved["blur"].is_contiguous(memory_format=torch.channels_last)

        # A frame blurred in its right half only: biased crops land there.
        frame = dict(pool.pool[0])
        extent = np.zeros((64, 128), np.float16)
        extent[:, 64:] = 30.0
        frame["extent"] = extent
        frame["sharp"] = np.zeros_like(frame["sharp"])
        frame["sharp"][:, 64:] = 255
        pool.pool.clear()
        pool.pool.append(frame)
        pool.augment = False
        pool.crops_per_frame = 10_000
        means = pool.next_batch(64)["sharp"].float().mean(dim=(1, 2, 3)) / 255
        assert means.mean() > 0.7  # uniform crops would average 0.5
    video = FramePool(photos, frames=5, crop=16, size=(64, 48), workers=1)
    try:
        assert video.next_batch(2)["blur"].shape == (2, 15, 16, 16)  # rendered by a worker
    finally:
        video.close()


def test_cli_budget_run_on_whole_frames_with_render_workers(photos, tmp_path, tiny_train_args):
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        ["train", "--data", "synth", "--photos", str(photos), "--synth-render", "frame",
         "--frame-size", "96x64", "--time-budget", "3", "--workers", "1", "--batch-size", "4",
         "--crop", "32", "--val-count", "1", "--out", str(out), "--precision", "fp32",
         "--log-every", "5", "--quiet", "--json", *tiny_train_args()],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["frames_rendered"] > 0 and 0 <= summary["data_wait_fraction"] < 1
    assert summary["wall_time_s"] <= 3.5 and summary["step"] > 0
    stored = json.loads(load_checkpoint(out / "checkpoint.pt")["config"])
    assert stored["synth_render"] == "frame" and stored["frame_size"] == [96, 64]


def test_compile_that_fails_falls_back_to_eager(tmp_path, monkeypatch):
    class Broken(torch.nn.Module):
        def forward(self, *args, **kwargs):
            raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", lambda module: Broken())
    c = cfg(steps=3)
    records = []
    summary = train(c, run(tmp_path, compile=True), on_event=records.append, datasets=data(c))
    assert summary["step"] == 3
    assert [r["step"] for r in records if r["event"] == "compile_fallback"] == [0]
    log = (tmp_path / "run" / "log.jsonl").read_text()
    assert "compile_fallback" in log and "no compiler here" in log


@pytest.mark.slow
def test_two_gloo_processes_agree_on_a_budgeted_run(photos, tmp_path, tiny_train_args):
    """Under torchrun the ranks' clocks differ: the lr, the validations and the last step are
    agreed through the per-step all-reduce, so the weights stay identical."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "dgn_cli", "train", "--data", "synth", "--photos", str(photos), "--time-budget",
        "4", "--batch-size", "2", "--crop", "32", "--depth-model", "exact", "--out", str(out),
        "--workers", "0", "--precision", "fp32", "--log-every", "5", "--val-count", "2",
        "--frame-size", "96x64", "--quiet", "--json", *tiny_train_args(),
    ]  # fmt: skip
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["world_size"] == 2 and summary["ranks_in_sync"]
    assert summary["step"] > 0 and summary["wall_time_s"] <= 5.0


def test_frame_pool_compresses_its_blurred_crops_when_asked(photos):
    batches = []
    for prob in (0.0, 1.0):
        with FramePool(photos, frames=1, crop=32, size=(128, 64), jpeg_prob=prob) as pool:
            batches.append(pool.next_batch(4))
    plain, packed = batches
    assert torch.equal(plain["sharp"], packed["sharp"])  # the same frames, crops and flips
    assert not torch.equal(plain["blur"], packed["blur"])
    assert packed["blur"].dtype == torch.uint8
    assert (plain["blur"].float() - packed["blur"].float()).abs().mean() < 16  # grey levels
