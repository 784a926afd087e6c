"""The campaign's measuring scripts (scripts/campaign/) give numbers that mean what they say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import torch

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts" / "campaign"
STILL, PAN, SHIFT = 6, 6, 4  # frames without motion, then frames panning SHIFT px each


def _clip(size: int = 64) -> list[np.ndarray]:
    """STILL frames of one view, then PAN frames panning SHIFT px per frame."""
    rng = np.random.default_rng(0)
    texture = cv2.resize(
        rng.integers(0, 256, (48, 48, 3), dtype=np.uint8), (160, 160), interpolation=cv2.INTER_CUBIC
    )
    xs = [0] * STILL + [SHIFT * (k + 1) for k in range(PAN)]
    return [np.ascontiguousarray(texture[16 : 16 + size, x + 16 : x + 16 + size]) for x in xs]


def _run(tmp_path: Path, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> dict:
    a, b, fig = tmp_path / "in.mp4", tmp_path / "out.mp4", tmp_path / "fig.png"
    iio.imwrite(a, np.stack(inputs), fps=10, quality=10)
    iio.imwrite(b, np.stack(outputs), fps=10, quality=10)
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "video_sharpness.py"), str(a), str(b), "--figure", str(fig)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert fig.is_file() and cv2.imread(str(fig)).shape == (64, 2 * 64 + 8, 3)  # 2x zoom of halves
    return json.loads(done.stdout)


def test_video_sharpness_sees_a_sharper_output_and_finds_the_moving_frames(tmp_path):
    sharp = _clip()
    blurred = [cv2.GaussianBlur(f, (0, 0), 1.5) for f in sharp]
    report = _run(tmp_path, blurred, sharp)
    assert report["frames"] == STILL + PAN
    assert report["laplacian_ratio_all"] > 2 and report["laplacian_ratio_moving_half"] > 2
    # the moving half is the panning frames, found by their shift, not the still ones
    assert report["most_motion_frame"] >= STILL
    assert abs(report["most_motion_shift_px"] - SHIFT) < 1
    assert report["moving_half_min_shift_px"] > SHIFT / 2

    same = _run(tmp_path, blurred, blurred)
    assert same["laplacian_ratio_all"] == 1.0 and same["laplacian_ratio_moving_half"] == 1.0


def _export(tmp_path: Path, name: str, seed: int, steps: int = 2, **kw) -> Path:
    """A tiny dgn-image export of STEPS steps (NAME.safetensors + manifest.json) in
    tmp_path/name."""
    from dgn_cli.train import train
    from tests.test_train import cfg, data, run

    c = cfg(steps=steps, seed=seed, **kw)
    folder = tmp_path / name
    train(c, run(tmp_path, name=f"run-{name}", export="dgn-image", export_dir=folder,
                 export_dtype="fp16"), datasets=data(c))  # fmt: skip
    return folder


def _soup(*args: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPTS / "soup.py"), *map(str, args),
                           "--name", "dgn-image"],
                          capture_output=True, text=True, check=False)  # fmt: skip


def test_soup_is_the_mean_of_its_members_and_installs(tmp_path):
    from dgn_cli.checkpoints import load_state_dict_file, read_metadata

    a, b = _export(tmp_path, "a", seed=1), _export(tmp_path, "b", seed=2, steps=3)
    done = _soup(tmp_path / "soup", a, b)
    assert done.returncode == 0, done.stderr
    wa, wb = (load_state_dict_file(f / "dgn-image.safetensors") for f in (a, b))
    soup = load_state_dict_file(tmp_path / "soup" / "dgn-image.safetensors")
    moved = 0
    for key, value in soup.items():
        assert value.dtype == torch.float16  # the members' dtype
        mean = (wa[key].float() + wb[key].float()) / 2
        assert torch.allclose(value.float(), mean, atol=1e-3, rtol=1e-3), key
        moved += int(not torch.equal(wa[key], wb[key]))
    assert moved > 0  # the seeds made different members, so the mean is a new model

    entry = json.loads((tmp_path / "soup" / "manifest.json").read_text())["entries"][0]
    again = _soup(tmp_path / "again", a, b)  # a rerun reproduces the recorded file exactly
    assert again.returncode == 0, again.stderr
    assert (
        json.loads((tmp_path / "again" / "manifest.json").read_text())["entries"][0]["sha256"]
        == entry["sha256"]
    )
    members = entry["training"]["soup"]["members"]
    assert [m["recipe"]["seed"] for m in members] == [1, 2]
    # the longest member's steps, in the manifest and in the file (not the first member's)
    assert entry["training"]["steps"] == 3 and entry["config"]["widths"] == [4, 8, 8]
    assert read_metadata(tmp_path / "soup" / "dgn-image.safetensors")["steps"] == "3"
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "manifest.json").write_text(json.dumps({"entries": []}))
    install = Path(__file__).resolve().parents[1] / "scripts" / "gpu" / "install.py"
    done = subprocess.run([sys.executable, str(install), str(tmp_path / "soup"), "dgn-image",
                           "--weights-dir", str(weights)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    from dgn_cli.checkpoints import load_dgn

    assert load_dgn(weights / "dgn-image.safetensors").config.widths == (4, 8, 8)


def test_soup_refuses_members_of_another_shape_or_a_damaged_file(tmp_path):
    a = _export(tmp_path, "a", seed=1)
    wide = _export(tmp_path, "wide", seed=1, widths=(8, 8, 8))
    done = _soup(tmp_path / "soup", a, wide)
    assert done.returncode != 0 and "config" in done.stderr
    assert not (tmp_path / "soup" / "dgn-image.safetensors").exists()

    b = _export(tmp_path, "b", seed=2)
    (b / "dgn-image.safetensors").write_bytes(b"damaged")
    done = _soup(tmp_path / "soup", a, b)
    assert done.returncode != 0 and "sha256" in done.stderr
    assert _soup(tmp_path / "soup", a).returncode != 0  # one member is not a soup
