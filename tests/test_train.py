"""The training loop: schedule, loss goes down, bit-exact resume, Ctrl-C, non-finite loss,
export, data order."""

import json
import os
import signal

import pytest
import torch
from tiny import TINY, TINY_DEPTH
from torch.utils.data import Dataset

from dgn_cli.checkpoints import load_dgn
from dgn_cli.distributed import state_digest
from dgn_cli.errors import CheckpointError
from dgn_cli.train import (
    RunOptions,
    TrainConfig,
    TrainingError,
    load_checkpoint,
    lr_at,
    merge_resume_config,
    step_batches,
    train,
)


class ToyBlur(Dataset):
    """Items in the training format: a smooth random sharp image, its box-blurred version
    (3 * frames channels), and a depth map; item i is a pure function of (seed, i)."""

    def __init__(self, n=16, frames=1, size=16, seed=0, nan_after=None):
        self.n, self.frames, self.size, self.seed = n, frames, size, seed
        self.nan_after, self.calls = nan_after, 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.calls += 1
        g = torch.Generator().manual_seed(self.seed * 10_000 + i)
        low = torch.rand(1, 3, self.size // 4, self.size // 4, generator=g)
        sharp = torch.nn.functional.interpolate(low, size=self.size, mode="bilinear")[0] * 2 - 1
        blur = torch.nn.functional.avg_pool2d(sharp[None], 3, 1, 1, count_include_pad=False)[0]
        depth = (sharp[:1] + 1) / 2
        if self.nan_after is not None and self.calls > self.nan_after:
            sharp = sharp * float("nan")
        return {"blur": blur.repeat(self.frames, 1, 1), "sharp": sharp, "depth": depth}


def cfg(**kw):
    base = dict(
        task="image",
        steps=6,
        batch_size=2,
        crop=16,
        lambda_p=0.0,
        widths=TINY["widths"],
        depth_widths=TINY_DEPTH["widths"],
        model_overrides={k: v for k, v in TINY.items() if k != "widths"},
        depth_model="exact",
        val_count=2,
    )
    base.update(kw)
    if base["task"] == "depth":
        base["model_overrides"] = {}
    return TrainConfig(**base)


def run(tmp_path, name="run", **kw):
    base = dict(out=tmp_path / name, device="cpu", precision="fp32", workers=0, log_every=1)
    base.update(kw)
    base.setdefault("val_every", 0)
    return RunOptions(**base)


def data(c, **kw):
    return ToyBlur(16, c.frames, c.crop, **kw), ToyBlur(2, c.frames, c.crop, seed=99)


def final_weights(tmp_path, name):
    return load_checkpoint(tmp_path / name / "checkpoint.pt")["model"]


def test_lr_schedule_is_eq_10_in_steps():
    c = TrainConfig(steps=100, lr=1e-4, lr_final=1e-6)
    assert lr_at(0, c) == lr_at(49, c) == 1e-4
    assert lr_at(99, c) == pytest.approx(1e-6)
    assert lr_at(74, c) == pytest.approx(1e-4 - (1e-4 - 1e-6) * 24 / 49)
    values = [lr_at(s, c) for s in range(100)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_data_order_is_a_pure_function_of_seed_and_step():
    c = cfg(steps=20, batch_size=2)
    ds = ToyBlur(6)  # 3 steps per epoch: the order spans several epochs
    full = [b["sharp"] for b in step_batches(ds, c, 0)]
    tail = [b["sharp"] for b in step_batches(ds, c, 7)]
    assert len(full) == 20 and len(tail) == 13
    assert all(torch.equal(a, b) for a, b in zip(full[7:], tail, strict=True))
    # Two ranks take disjoint halves of each global batch.
    r0 = next(step_batches(ds, c, 0, rank=0, world_size=2))["sharp"]
    r1 = next(step_batches(ds, c, 0, rank=1, world_size=2))["sharp"]
    assert not torch.equal(r0, r1)


@pytest.mark.parametrize("task", ["image", "video", "baseline", "concat", "depth"])
def test_a_few_steps_lower_the_loss(tmp_path, task):
    c = cfg(task=task, steps=16, lr=3e-3, lr_final=3e-3)
    records = []
    summary = train(c, run(tmp_path, val_every=16), on_event=records.append, datasets=data(c))
    losses = [r["loss"] for r in records if r["event"] == "train"]
    assert len(losses) == 16
    assert sum(losses[-4:]) < sum(losses[:4])
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all("step" in line and "loss" in line for line in lines)
    assert lines[-1]["event"] == "end" and summary["step"] == 16
    val = [line for line in lines if line["event"] == "val"]
    assert val and ("psnr" in val[0] if task != "depth" else "depth_rmse" in val[0])


def test_resume_is_bit_exact(tmp_path):
    c = cfg(steps=8, lr_final=1e-5)  # crosses the schedule's half-way point
    train(c, run(tmp_path, "once"), datasets=data(c))
    # The same run interrupted by Ctrl-C (during step 3's logging: the loop stops after the
    # step in progress), then resumed.
    hits = []

    def interrupt(record):
        if record["event"] == "train" and record["step"] == 3 and not hits:
            hits.append(1)
            os.kill(os.getpid(), signal.SIGINT)

    first = train(c, run(tmp_path, "resumed"), on_event=interrupt, datasets=data(c))
    assert first["interrupted"] and first["step"] in (3, 4)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["step"] == first["step"]
    second = train(c, run(tmp_path, "resumed"), resume=True, datasets=data(c))
    assert second["step"] == 8 and not second["interrupted"]
    once, resumed = final_weights(tmp_path, "once"), final_weights(tmp_path, "resumed")
    assert state_digest(once) == state_digest(resumed)
    # The log was not duplicated: steps 1..8 once each.
    steps = [
        json.loads(x)["step"]
        for x in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()
        if json.loads(x)["event"] == "train"
    ]
    assert steps == list(range(1, 9))


def test_a_run_folder_is_never_overwritten_and_resume_checks_the_recipe(tmp_path):
    c = cfg(steps=2)
    train(c, run(tmp_path), datasets=data(c))
    with pytest.raises(TrainingError, match="--resume"):
        train(c, run(tmp_path), datasets=data(c))
    with pytest.raises(TrainingError, match="--lr"):
        merge_resume_config(c, {"lr": 1.0})
    assert merge_resume_config(c, {"steps": 10, "lr": c.lr}).steps == 10
    more = train(c, run(tmp_path), resume=True, resume_overrides={"steps": 4}, datasets=data(c))
    assert more["step"] == 4


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    c = cfg(steps=6)
    train_set = ToyBlur(16, 1, 16, nan_after=6)  # steps 1-3 fine, step 4 sees NaN
    with pytest.raises(TrainingError, match="non-finite at step 3"):
        train(c, run(tmp_path, ckpt_every=1), datasets=(train_set, ToyBlur(2)))
    payload = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert payload["step"] == 3
    assert all(torch.isfinite(v).all() for v in payload["model"].values())


def test_export_then_load_dgn_gives_the_same_outputs(tmp_path):
    c = cfg(steps=2)
    summary = train(
        c,
        run(tmp_path, export="toy-dgn", export_dir=tmp_path / "weights"),
        datasets=data(c),
    )
    path = tmp_path / "weights" / "toy-dgn.safetensors"
    assert summary["export"]["path"] == str(path)
    model = load_dgn(path)
    reference = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    assert state_digest(model.state_dict()) == state_digest(reference)
    manifest = json.loads((tmp_path / "weights" / "manifest.json").read_text())
    entry = manifest["entries"][0]
    assert entry["name"] == "toy-dgn" and entry["status"] == "trained"
    assert entry["sha256"] == summary["export"]["sha256"]
    assert entry["training"]["steps"] == 2 and entry["training"]["task"] == "image"
    # Refuses to overwrite an export unless asked.
    with pytest.raises(Exception, match="exists"):
        train(c, run(tmp_path, "again", export="toy-dgn", export_dir=tmp_path / "weights"))


def test_init_fine_tunes_from_exported_weights_and_refuses_another_model(tmp_path):
    c = cfg(steps=2)
    train(c, run(tmp_path, export="toy", export_dir=tmp_path / "weights"), datasets=data(c))
    start = tmp_path / "weights" / "toy.safetensors"
    # Zero steps of change would be the same weights: check the starting point through a
    # run whose learning rate is 0 (Adam with lr 0 and no weight decay leaves them unchanged).
    frozen = cfg(steps=1, lr=0.0, lr_final=0.0, weight_decay=0.0, init=str(start))
    records = []
    train(frozen, run(tmp_path, "tuned"), on_event=records.append, datasets=data(frozen))
    assert state_digest(final_weights(tmp_path, "tuned")) == state_digest(
        load_dgn(start).state_dict()
    )
    assert [r.get("init") for r in records if r["event"] == "start"] == [str(start)]
    # Weights of another variant (the baseline has no refinement branch) are refused.
    other = cfg(steps=1, task="baseline", init=str(start))
    with pytest.raises(CheckpointError, match="--init"):
        train(other, run(tmp_path, "wrong"), datasets=data(other))


def test_an_init_run_exports_an_average_that_starts_from_its_init(tmp_path):
    c = cfg(steps=2)
    train(c, run(tmp_path, export="toy", export_dir=tmp_path / "weights"), datasets=data(c))
    start = load_dgn(tmp_path / "weights" / "toy.safetensors").state_dict()
    tuned = cfg(
        steps=1, lr=1e-2, lr_final=1e-2, ema=0.9, init=str(tmp_path / "weights" / "toy.safetensors")
    )
    train(tuned, run(tmp_path, "tuned"), datasets=data(tuned))
    payload = load_checkpoint(tmp_path / "tuned" / "checkpoint.pt")
    live, avg = payload["model"], payload["ema"]["weights"]
    moved = [
        k for k in start if start[k].is_floating_point() and not torch.equal(start[k], live[k])
    ]
    assert moved  # the step changed the live weights...
    for k in moved:  # ...and the exported average took a tenth of that change, not 90 %
        assert torch.allclose(avg[k], start[k] + 0.1 * (live[k] - start[k]), atol=1e-6)


def test_a_depth_net_trained_scale_invariant_is_read_relative(tmp_path):
    from dgn_cli.checkpoints import load_depth_estimator

    c = cfg(task="depth", steps=3, lr=1e-2, lr_final=1e-2, depth_loss="invariant")
    records = []
    train(
        c,
        run(tmp_path, export="toy-depth", export_dir=tmp_path / "weights", val_every=3),
        on_event=records.append,
        datasets=data(c),
    )
    terms = [r for r in records if r["event"] == "train"][0]
    assert {"loss_depth", "loss_anchor", "loss_gradient"} <= set(terms)
    estimator = load_depth_estimator(tmp_path / "weights" / "toy-depth.safetensors")
    assert estimator.net.config.relative  # the export says how to read it
    torch.nn.init.normal_(estimator.net.head.weight, std=0.5)  # 3 steps leave it nearly flat
    with torch.no_grad():
        depth = estimator(torch.rand(1, 3, 24, 32))
    assert depth.amin() == 0 and depth.amax() == 1  # min-max normalised per frame
    val = [r for r in records if r["event"] == "val"]
    assert val and 0 <= val[-1]["depth_rmse"] <= 1


def test_bf16_autocast_on_a_cpu_that_supports_it(tmp_path):
    from dgn_cli.devices import cpu_bf16_support, cpu_supports_bf16, resolve_precision

    support = cpu_bf16_support()
    if support is None:
        pytest.skip("this CPU has no native bf16")
    cpu = torch.device("cpu")
    assert resolve_precision(cpu, "auto", training=True) == (
        torch.bfloat16 if cpu_supports_bf16() else torch.float32
    )
    assert resolve_precision(cpu, "fp32", training=True) == torch.float32
    c = cfg(steps=2)
    summary = train(c, run(tmp_path, precision="bf16"), datasets=data(c))
    assert summary["precision"] == "bf16" and summary["loss"] > 0
    # Weights and optimiser state stay fp32 under autocast.
    payload = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert all(v.dtype == torch.float32 for v in payload["model"].values())


@pytest.mark.cuda
def test_cuda_bf16_channels_last_training(tmp_path):
    c = cfg(steps=3)
    summary = train(c, run(tmp_path, device="cuda", precision="auto"), datasets=data(c))
    assert summary["device"].startswith("cuda") and summary["step"] == 3
    assert summary["loss"] is not None
