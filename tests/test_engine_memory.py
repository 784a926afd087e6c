"""Images larger than memory: a 4000x3000 photo goes through tile by tile with a bounded
number of full-resolution copies (issue 4, item 6).

The bound (see dgn_cli.engine): `deblur` holds at most 8 float32 channels at full resolution
(input 3, initial depth 1, blended output 3, refined depth 1 = 32 bytes/px) plus the 8-bit
input and output arrays (3 + 3 bytes/px), plus per-tile activations and the depth
estimator's working copy (bounded by --tile and depth_max_side, not by the image size).
The peak resident memory of a child process is measured (VmHWM) after a warm-up run.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dgn_cli import checkpoints
from dgn_cli.models import DGN, DGNConfig
from dgn_cli.models.depth import SmallDepthConfig, SmallDepthNet

H, W = 3000, 4000
BYTES_PER_PX = 32 + 3 + 3
# Not proportional to the image: one 1024-px tile's activations and blending weight, the depth
# estimator's pass at depth_max_side = 2048 px, the PNG codec's buffers.
FIXED_ALLOWANCE = 256 * 2**20

CHILD = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.set_num_threads(2)
    from dgn_cli.cli import app

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    small, big, folder, *args = sys.argv[1:]
    rc = app(["deblur-image", small, "-o", folder + "/out_small.png", *args],
             standalone_mode=False)
    before = status("VmRSS:")
    rc = rc or app(["deblur-image", big, "-o", folder + "/out_big.png", *args],
                   standalone_mode=False)
    assert not rc, rc
    print(json.dumps({"before": before, "peak": status("VmHWM:")}))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_4000x3000_peak_memory_within_bound(tmp_path):
    torch.manual_seed(0)
    # The smallest DGN there is: this test is about memory, not about the network.
    cfg = DGNConfig(widths=(2, 2, 2), blocks_per_scale=0, bottom_blocks=0, sft_chs=2,
                    io_kernel_size=3)  # fmt: skip
    checkpoints.save_dgn(DGN(cfg), tmp_path / "dgn.safetensors")
    net = SmallDepthNet(SmallDepthConfig(widths=(2,)))
    checkpoints.save_depth_net(net, tmp_path / "depth.safetensors")
    # A smooth photo-sized image (compresses well, so the PNG itself is small).
    y = np.linspace(0, 255, H, dtype=np.float32)[:, None]
    x = np.linspace(0, 255, W, dtype=np.float32)[None, :]
    big = np.dstack([y + 0 * x, 0 * y + x, (y + x) / 2]).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "big.png"), big)
    cv2.imwrite(str(tmp_path / "small.png"), big[:64, :64])
    del big
    args = ["--weights", str(tmp_path / "dgn.safetensors"), "--depth-model",
            str(tmp_path / "depth.safetensors"), "--device", "cpu", "--precision", "fp32",
            "--tile", "1024", "--quiet"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "small.png"), str(tmp_path / "big.png"),
         str(tmp_path), *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    mem = json.loads(proc.stdout.strip().splitlines()[-1])
    grew = mem["peak"] - mem["before"]
    bound = H * W * BYTES_PER_PX + FIXED_ALLOWANCE
    print(f"\npeak growth {grew / 2**20:.0f} MiB; bound {bound / 2**20:.0f} MiB")
    assert grew <= bound
    out = cv2.imread(str(tmp_path / "out_big.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == (H, W, 3)
