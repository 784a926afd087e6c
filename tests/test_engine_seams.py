"""No seams: tiled restoration matches the whole-image result (issue 4, item 2).

The issue's bound: in fp32, a 1280x720 image with 256-px tiles and the default overlap is
within 2/255 of the whole-image result at every pixel. The receptive field of a DGN is set by
its depth (layers, kernel sizes, strides), not by its widths, so the default-suite test uses a
DGN with every layer of the default config but 1/4 of the widths (16x fewer FLOPs: ~3 s
instead of ~50 s on 2 cores); PyTorch's default init scales with fan-in, so the random
network's effective receptive field is comparable. The default-width test runs too (~20-50 s
on 2 cores), so the exact check the issue asks for is part of every CI run.
"""

import time

import pytest
import torch
import torch.nn.functional as F

from dgn_cli.engine import DEFAULT_OVERLAP, Engine, EngineConfig
from dgn_cli.models import DGN, DGNConfig


def _photo_like(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth shapes plus hard edges and fine texture, in [0, 1]: (1, 3, h, w)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // 32, w // 32, generator=g)
    coarse = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    edges = (torch.rand(1, 3, h // 8, w // 8, generator=g) > 0.5).float()
    edges = F.interpolate(edges, size=(h, w), mode="nearest")
    noise = torch.rand(1, 3, h, w, generator=g)
    return (0.6 * coarse + 0.25 * edges + 0.15 * noise).clamp(0, 1)


def _seam_error(device: str, dgn: DGN | None = None) -> tuple[float, float]:
    """Max |tiled - whole| over 1280x720 in 1/255 units: (image, refined depth)."""
    kw = dict(weights="random", device=device, precision="fp32")
    if dgn is None:
        whole, tiled = Engine(EngineConfig(tile=0, **kw)), Engine(EngineConfig(tile=256, **kw))
    else:
        whole = Engine(EngineConfig(tile=0, **kw), dgn=dgn)
        tiled = Engine(EngineConfig(tile=256, **kw), dgn=dgn)
    assert tiled.config.tile_overlap == DEFAULT_OVERLAP
    image = _photo_like(720, 1280)
    depth = torch.linspace(0, 1, 1280).expand(1, 1, 720, 1280) * 0.7 + image[:, :1] * 0.3
    t0 = time.perf_counter()
    ref_image, ref_depth = whole.restore(image, depth)
    t1 = time.perf_counter()
    seen = []
    out_image, out_depth = tiled.restore(image, depth, progress=lambda d, n: seen.append((d, n)))
    t2 = time.perf_counter()
    assert whole.last_run.tiles == 1
    assert tiled.last_run.tiles == 28 and seen[-1] == (28, 28)
    image_err = (out_image - ref_image).abs().max().item() * 255
    depth_err = (out_depth - ref_depth).abs().max().item() * 255
    print(
        f"\n{device}: whole {t1 - t0:.1f}s, tiled {t2 - t1:.1f}s; max |tiled - whole| "
        f"image {image_err:.4f}/255, refined depth {depth_err:.4f}/255"
    )
    return image_err, depth_err


@pytest.mark.slow
def test_no_seams_receptive_field_preserving_dgn():
    torch.manual_seed(0)
    # Every layer of the default config (same receptive field), a quarter of the widths.
    dgn = DGN(DGNConfig(widths=(8, 16, 32), sft_chs=8))
    image_err, depth_err = _seam_error("cpu", dgn)
    assert image_err <= 2.0 and depth_err <= 2.0


@pytest.mark.slow  # ~50 s on 2 idle cores: the exact check the issue asks for, kept in CI
def test_no_seams_default_dgn_cpu():
    image_err, depth_err = _seam_error("cpu")
    assert image_err <= 2.0 and depth_err <= 2.0


@pytest.mark.cuda
def test_no_seams_default_dgn_gpu():
    image_err, depth_err = _seam_error("cuda")
    assert image_err <= 2.0 and depth_err <= 2.0
