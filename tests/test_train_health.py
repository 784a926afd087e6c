"""The training bugs that erased the first shipped weights, each pinned by a test: L2-in-Adam
decay, a random (non-identity) initial model, an SFT path that never got a gradient, dead
weights going unnoticed, and cached synthetic scenes augmented the same way every epoch."""

import json

import numpy as np
import pytest
import torch

from dgn_cli.models import DGN
from dgn_cli.train import TrainConfig, TrainingError, build_optimizer, decay_parameter_names, train
from dgn_cli.weight_health import sft_condition_norms, zero_fraction
from tests.test_train import cfg, data, run


def _inputs(frames=1, h=24, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 3 * frames, h, w, generator=g) * 2 - 1
    ramp = torch.linspace(0, 1, w).expand(2, 1, h, w).contiguous()  # non-constant depth
    return image, ramp


@pytest.mark.parametrize("variant,frames", [("dgn", 1), ("dgn", 5), ("baseline", 1), ("concat", 1)])
def test_an_untrained_dgn_is_the_identity(tiny_config, variant, frames):
    torch.manual_seed(0)
    model = DGN(tiny_config(variant=variant, frames=frames)).eval()
    image, depth = _inputs(frames)
    out = model(image, depth)
    c = frames // 2
    assert torch.equal(out.image, image[:, 3 * c : 3 * c + 3])
    if out.depth is not None:
        assert torch.equal(out.depth, depth)


@pytest.mark.parametrize("variant", ["dgn", "concat"])
def test_sft_condition_convs_get_a_gradient_after_one_step(tiny_config, variant):
    torch.manual_seed(0)
    model = DGN(tiny_config(variant=variant))
    optimizer = build_optimizer(model, TrainConfig(lr=1e-3, widths=(4, 8, 8)))
    image, depth = _inputs()
    sharp = image * 0.5

    def step():
        optimizer.zero_grad()
        out = model(image, depth)
        loss = (out.image - sharp).square().mean() + (out.depth - depth.flip(-1)).square().mean()
        loss.backward()

    step()
    optimizer.step()
    step()
    names = [n for n, _ in model.named_parameters() if ".sft.condition." in n and "weight" in n]
    assert len(names) == (6 if variant == "dgn" else 0)
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_decay_is_decoupled_and_only_on_conv_weights(tiny_config):
    torch.manual_seed(0)
    model = DGN(tiny_config())
    decayed = decay_parameter_names(model)
    assert decayed and all(".sft." not in n and not n.endswith("bias") for n in decayed)
    c = TrainConfig(lr=1e-3, weight_decay=1e-2, widths=(4, 8, 8))
    optimizer = build_optimizer(model, c)
    assert isinstance(optimizer, torch.optim.AdamW)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    # A loss gradient of exactly zero: L2-in-Adam would move every weight ~lr per step towards
    # zero (40 steps x 1e-3 = 0.04, as large as many weights); decoupled decay
    # shrinks them by the factor (1 - lr * wd) per step only, and leaves the rest alone.
    for _ in range(40):
        optimizer.zero_grad()
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
    shrink = (1 - 1e-3 * 1e-2) ** 40
    for name, p in model.named_parameters():
        if name in decayed:
            assert torch.allclose(p, before[name] * shrink, rtol=1e-4, atol=1e-7), name
        else:
            assert torch.equal(p, before[name]), name
    assert zero_fraction(model) < 0.05


def test_the_log_records_dead_weights_and_the_sft_norms(tmp_path):
    c = cfg(steps=4, lr=1e-3)
    train(c, run(tmp_path), datasets=data(c))
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [line for line in lines if line["event"] == "train"]
    assert steps and all(0 <= s["zero_fraction"] < 0.2 for s in steps)
    norms = steps[-1]["sft_condition_norm"]
    assert set(norms) == {"refinement.net.sft", "deblur.net.sft"}
    assert all(v > 0 for v in norms.values())


def test_training_stops_loudly_on_mostly_zero_weights(tmp_path):
    c = cfg(steps=4)
    first = train(c, run(tmp_path, name="a", export="w", export_dir=tmp_path), datasets=data(c))
    assert first["step"] == 4
    # Weights that are mostly zeros (like the first shipped ones) are refused as a start point.
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = tmp_path / "w.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    state = {k: torch.zeros_like(v) if v.dim() > 1 else v for k, v in load_file(path).items()}
    dead = tmp_path / "dead" / "z.safetensors"  # away from the manifest that names w's sha256
    dead.parent.mkdir()
    save_file(state, str(dead), metadata=meta)
    with pytest.raises(TrainingError, match="exactly zero"):
        train(cfg(steps=4, init=str(dead)), run(tmp_path, name="b"), datasets=data(c))


def test_sft_norms_name_each_layer(tiny_config):
    norms = sft_condition_norms(DGN(tiny_config()))
    assert set(norms) == {"refinement.net.sft", "deblur.net.sft"}


def test_cached_synthetic_scenes_get_a_new_augmentation_each_epoch(tmp_path):
    import cv2

    from dgn_cli.data.datasets import SynthDataset

    rng = np.random.default_rng(0)
    for i in range(2):
        img = cv2.GaussianBlur(rng.random((60, 80, 3)).astype(np.float32), (0, 0), 2)
        cv2.imwrite(str(tmp_path / f"p{i}.png"), (img * 255).astype(np.uint8))
    ds = SynthDataset(tmp_path, 4, size=24, seed=3, cache=True)
    seen = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        seen.add(ds[1]["sharp"].numpy().tobytes())
    assert len(seen) > 1  # the same scene, other flips/rotations
    ds.set_epoch(2)
    again = ds[1]["sharp"]
    ds.set_epoch(2)
    assert torch.equal(again, ds[1]["sharp"])  # still a pure function of (seed, i, epoch)
    full = SynthDataset(tmp_path, 1, size=(40, 24), seed=3, augment=False)
    assert full[0]["sharp"].shape == (3, 24, 40)


def test_a_runaway_loss_stops_the_run(tmp_path):
    from dgn_cli.train import DivergenceWatch

    watch = DivergenceWatch(5.0, patience=3)
    for step, loss in enumerate([0.1, 0.06, 0.07, 0.05, 0.3]):
        watch.check(loss, step, tmp_path / "checkpoint.pt")  # one spike is forgiven
    watch.check(0.06, 5, tmp_path / "checkpoint.pt")
    with pytest.raises(TrainingError, match="diverged by step 8"):
        for step, loss in [(6, 1.0), (7, 1.01), (8, 0.99)]:
            watch.check(loss, step, tmp_path / "checkpoint.pt")
    DivergenceWatch(0.0).check(1e9, 0, tmp_path)  # off


def test_gradient_clipping_is_logged(tmp_path):
    c = cfg(steps=3, grad_clip=0.01, divergence=5.0)
    train(c, run(tmp_path), datasets=data(c))
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all("grad_norm" in x for x in lines if x["event"] == "train")


def test_a_video_dgn_can_start_from_image_weights(tmp_path, tiny_config):
    from dgn_cli.checkpoints import save_dgn
    from dgn_cli.models.dgn import randomize_outputs
    from dgn_cli.train import load_init_weights

    torch.manual_seed(0)
    image_model = randomize_outputs(DGN(tiny_config())).eval()
    save_dgn(image_model, tmp_path / "image.safetensors")
    video_model = DGN(tiny_config(frames=5)).eval()
    load_init_weights(video_model, str(tmp_path / "image.safetensors"))
    frames, depth = _inputs(frames=5)
    with torch.no_grad():
        video = video_model(frames, depth)
        image = image_model(frames[:, 6:9], depth)
    assert torch.allclose(video.image, image.image, atol=1e-5)
    assert not torch.equal(video.image, frames[:, 6:9])
