"""The inference engine: devices, precision, tiling, out-of-memory retry, NaN recompute."""

import pytest
import torch

from dgn_cli import devices, engine
from dgn_cli.engine import Engine, EngineConfig
from dgn_cli.errors import DeviceError, DgnError
from dgn_cli.models import DGN
from dgn_cli.models.depth import DepthEstimator

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")


@pytest.fixture
def models(tiny_config, tiny_depth_net):
    torch.manual_seed(0)
    dgn = DGN(tiny_config())
    depth = DepthEstimator(tiny_depth_net(), "small", "tiny")
    return dgn, depth


def make(models, **cfg):
    dgn, depth = models
    cfg.setdefault("device", "cpu")
    cfg.setdefault("precision", "fp32")
    return Engine(EngineConfig(**cfg), dgn=dgn, depth_estimator=depth)


def image(h=70, w=90, seed=0):
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


@no_cuda
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda_is_a_clear_error(spec):
    with pytest.raises(DeviceError, match="CUDA is not available.*--device cpu"):
        devices.resolve_device(spec)


@pytest.mark.parametrize("spec", ["gpu", "cpu:1", "cuda:x", ""])
def test_unknown_device_rejected(spec):
    with pytest.raises(DeviceError, match="unknown device"):
        devices.resolve_device(spec)


def test_auto_device_and_precision(monkeypatch):
    dev = devices.resolve_device("auto")
    assert dev.type in {"cuda", "mps", "cpu"}
    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: True)
    assert devices.resolve_precision(cpu, "auto") == torch.bfloat16
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: False)
    assert devices.resolve_precision(cpu, "auto") == torch.float32
    assert devices.resolve_precision(cpu, "fp16") == torch.float16
    with pytest.raises(DeviceError, match="unknown precision"):
        devices.resolve_precision(cpu, "int8")


def test_bad_tile_options():
    with pytest.raises(DgnError, match="more than half"):
        EngineConfig(tile=100, tile_overlap=64)
    with pytest.raises(DgnError, match="--tile"):
        EngineConfig(tile=-1)


def test_deblur_shapes_ranges_and_plain_tensors(models):
    eng = make(models, tile=0)
    out, depth, refined = eng.deblur(image())
    assert out.shape == (1, 3, 70, 90) and depth.shape == refined.shape == (1, 1, 70, 90)
    for t in (out, depth, refined):
        assert t.dtype == torch.float32 and t.device.type == "cpu"
        assert 0 <= t.min() and t.max() <= 1
        assert not t.is_inference()  # callers may modify the results in place
    out.mul_(2)


def test_restore_estimates_depth_when_missing_and_checks_shapes(models):
    eng = make(models, tile=0)
    x = image()
    a, _ = eng.restore(x)
    b, _ = eng.restore(x, eng.estimate_depth(x))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"\(1, 3, H, W\)"):
        eng.restore(torch.rand(1, 4, 8, 8))
    with pytest.raises(ValueError, match="spatial size"):
        eng.restore(x, torch.rand(1, 1, 8, 8))


def test_depth_runs_on_the_whole_frame_downscaled_when_huge(models):
    eng = make(models, depth_max_side=64)
    calls = []
    net = eng.depth_estimator
    orig = net.forward
    net.forward = lambda x: calls.append(tuple(x.shape[-2:])) or orig(x)
    depth = eng.estimate_depth(image(100, 200))
    assert calls == [(32, 64)] and depth.shape == (1, 1, 100, 200)


def test_tiled_close_to_whole_and_progress(models):
    x = image(150, 230)
    whole, _ = make(models, tile=0).restore(x)
    seen = []
    eng = make(models, tile=64, tile_overlap=32)
    tiled, _ = eng.restore(x, progress=lambda d, n: seen.append((d, n)))
    assert eng.last_run.tiles == len(seen) - 1 > 1 and seen[-1][0] == seen[-1][1]
    assert (tiled - whole).abs().max() * 255 <= 2


def test_auto_tile_from_memory_budget(models, monkeypatch):
    eng = make(models)
    monkeypatch.setattr(devices, "memory_budget", lambda d: 10**12)
    assert eng.auto_tile(3000, 4000) == 0  # fits: whole image
    bpp = engine.dgn_bytes_per_pixel(eng.dgn.config)
    monkeypatch.setattr(devices, "memory_budget", lambda d: int(bpp * 512 * 512))
    assert eng.auto_tile(3000, 4000) == 512
    monkeypatch.setattr(devices, "memory_budget", lambda d: 1)
    assert eng.auto_tile(3000, 4000) == engine.MIN_TILE


def _oom_once(eng, monkeypatch, error, limit):
    """Make every forward on a tile larger than `limit` px raise an out-of-memory error."""
    orig = eng._forward
    sizes = []

    def forward(x, d, dtype):
        sizes.append(max(x.shape[-2:]))
        if max(x.shape[-2:]) > limit:
            raise error
        return orig(x, d, dtype)

    monkeypatch.setattr(eng, "_forward", forward)
    return sizes


@pytest.mark.parametrize(
    "error",
    [torch.OutOfMemoryError("CUDA out of memory."), RuntimeError("can't allocate memory")],
)
def test_out_of_memory_retries_with_half_tiles(models, monkeypatch, error):
    x = image(300, 520)
    whole, _ = make(models, tile=0).restore(x)
    eng = make(models, tile=0, tile_overlap=32)
    sizes = _oom_once(eng, monkeypatch, error, limit=300)
    out, _ = eng.restore(x)
    assert sizes[0] == 520 and eng.last_run.oom_retries == 1
    assert eng.last_run.tile_sizes_tried == [0, 256] and eng.last_run.tile == 256
    assert (out - whole).abs().max() * 255 <= 2
    eng.restore(x)  # the smaller tile is remembered: no second failure
    assert eng.last_run.oom_retries == 0 and eng.last_run.tile == 256


def test_out_of_memory_below_the_floor_is_a_device_error(models, monkeypatch):
    eng = make(models, tile=0)
    _oom_once(eng, monkeypatch, torch.OutOfMemoryError("CUDA out of memory."), limit=0)
    with pytest.raises(DeviceError, match="out of memory.*128-px tiles"):
        eng.restore(image(300, 520))


def test_other_errors_are_not_retried(models, monkeypatch):
    eng = make(models, tile=0)
    _oom_once(eng, monkeypatch, RuntimeError("shape mismatch"), limit=0)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        eng.restore(image())
    assert eng.last_run.oom_retries == 0


def test_nonfinite_tile_recomputed_in_fp32(models, monkeypatch):
    x = image()
    fp32 = make(models, tile=0)
    depth_init = fp32.estimate_depth(x)
    ref, ref_depth = fp32.restore(x, depth_init)
    eng = make(models, tile=0, precision="bf16")
    orig = eng._forward

    def forward(x, d, dtype):
        out = orig(x, d, dtype)
        if dtype != torch.float32:  # an fp16/bf16 overflow
            return type(out)(out.image * float("nan"), out.depth)
        return out

    monkeypatch.setattr(eng, "_forward", forward)
    out, depth = eng.restore(x, depth_init)
    assert eng.last_run.fp32_recomputed == 1 and eng.last_run.nonfinite_left == 0
    assert torch.equal(out, ref) and torch.equal(depth, ref_depth)


def test_bf16_on_cpu_close_to_fp32(models):
    x = image()
    ref, _ = make(models, tile=0).restore(x)
    out, _ = make(models, tile=0, precision="bf16").restore(x)
    assert (out - ref).abs().max() < 0.05


def test_random_weights_are_seeded():
    a = Engine(EngineConfig(weights="random", device="cpu", precision="fp32", seed=3))
    b = Engine(EngineConfig(weights="random", device="cpu", precision="fp32", seed=3))
    assert a.info()["random_weights"] and a.dgn.config.widths == (32, 64, 128)
    for (ka, va), (_, vb) in zip(
        a.dgn.state_dict().items(), b.dgn.state_dict().items(), strict=True
    ):
        assert torch.equal(va, vb), ka
    video = Engine(EngineConfig(weights="random", kind="video", device="cpu"))
    assert video.dgn.config.frames == 5


def test_video_restore_takes_five_frames(tiny_config, tiny_depth_net):
    dgn = DGN(tiny_config(frames=5))
    depth = DepthEstimator(tiny_depth_net(), "small")
    eng = Engine(
        EngineConfig(device="cpu", precision="fp32", kind="video"), dgn=dgn, depth_estimator=depth
    )
    frames = torch.rand(1, 15, 40, 60)
    out, refined = eng.restore(frames, progress=None)
    assert out.shape == (1, 3, 40, 60) and refined.shape == (1, 1, 40, 60)


@pytest.mark.cuda
def test_cuda_bf16_engine(models):
    eng = make(models, device="cuda", precision="auto", tile=0)
    assert eng.device.type == "cuda"
    assert eng.dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32)
    x = image(256, 384)
    out, _ = eng.restore(x)
    ref, _ = make(models, tile=0).restore(x)
    assert out.device.type == "cpu" and torch.isfinite(out).all()
    assert (out - ref).abs().max() < 0.05


@pytest.mark.cuda
def test_cuda_out_of_memory_retry(models, monkeypatch):
    eng = make(models, device="cuda", tile=0, tile_overlap=32)
    _oom_once(eng, monkeypatch, torch.cuda.OutOfMemoryError("CUDA out of memory."), limit=300)
    out, _ = eng.restore(image(300, 520))
    assert eng.last_run.oom_retries == 1 and eng.last_run.tile == 256
    assert torch.isfinite(out).all()
