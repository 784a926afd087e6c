"""The synthetic blur renderer: determinism, shapes and ranges, layout, blur against depth."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from dgn_cli.data.synth import (
    PhotoBank,
    SynthConfig,
    contact_sheet,
    render_sequence,
    write_split,
)
from dgn_cli.errors import InputError, OutputError


def make_photos(folder, n=4, size=(160, 120), smooth=2.0, seed=0):
    """Small random-texture 'photos' (smoothed colour noise) written as PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        noise = rng.random((size[1], size[0], 3)).astype(np.float32)
        tex = cv2.GaussianBlur(noise, (0, 0), smooth)
        tex = (tex - tex.min()) / (tex.max() - tex.min())
        cv2.imwrite(str(folder / f"photo{i}.png"), (tex * 255).astype(np.uint8))
    return folder


def make_pink_photos(folder, n=4, size=(160, 120), seed=0):
    """Colour 1/f noise: statistically the same at every scale, so a layer's sharpness does
    not depend on how much its photo crop was resized."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    f = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.fftfreq(w)[None, :] ** 2)
    f[0, 0] = 1.0
    for i in range(n):
        spec = rng.standard_normal((3, h, w)) + 1j * rng.standard_normal((3, h, w))
        x = np.real(np.fft.ifft2(spec / f, axes=(1, 2))).transpose(1, 2, 0)
        x = (x - x.min()) / (x.max() - x.min())
        cv2.imwrite(str(folder / f"pink{i}.png"), (x * 255).astype(np.uint8))
    return folder


@pytest.fixture
def bank(tmp_path):
    return PhotoBank(make_photos(tmp_path / "photos"))


def test_render_shapes_ranges(bank):
    out = render_sequence(bank, seed=3, width=80, height=48, frames=3)
    assert out["blur"].shape == (3, 48, 80, 3) and out["blur"].dtype == np.uint8
    assert out["sharp"].shape == (3, 48, 80, 3) and out["sharp"].dtype == np.uint8
    assert out["depth"].shape == (3, 48, 80) and out["depth"].dtype == np.float32
    assert out["depth"].min() >= 0.0 and out["depth"].max() <= 1.0
    # normalised over the sequence: the extremes are reached somewhere in it
    assert out["depth"].min() < 0.02 and out["depth"].max() > 0.98
    assert out["subframes"] in (7, 9, 11, 13)
    assert not np.array_equal(out["blur"][0], out["sharp"][0])


def test_render_is_deterministic(bank):
    a = render_sequence(bank, 11, 64, 64, frames=2)
    b = render_sequence(bank, 11, 64, 64, frames=2)
    c = render_sequence(bank, 12, 64, 64, frames=2)
    for key in ("blur", "sharp", "depth"):
        assert a[key].tobytes() == b[key].tobytes()
    assert a["blur"].tobytes() != c["blur"].tobytes()


def test_noise_only_on_blur(bank):
    cfg0 = SynthConfig(noise_sigma=0.0)
    cfg1 = SynthConfig(noise_sigma=0.05)
    a = render_sequence(bank, 5, 64, 64, cfg=cfg0)
    b = render_sequence(bank, 5, 64, 64, cfg=cfg1)
    assert np.array_equal(a["sharp"], b["sharp"]) and np.array_equal(a["depth"], b["depth"])
    diff = b["blur"].astype(np.float32) - a["blur"].astype(np.float32)
    assert 0.03 * 255 < diff.std() < 0.07 * 255


def _sharpness_ratio(blur, sharp, mask):
    """Gradient energy of the blurred frame over that of the sharp one inside mask."""

    def energy(img):
        g = img.astype(np.float32).mean(axis=2)
        gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
        return float((gx**2 + gy**2)[mask].mean())

    return energy(blur) / energy(sharp)


def test_blur_grows_with_inverse_depth(tmp_path):
    # No rotation, no own motion, no noise: all blur is the camera translation, which moves a
    # layer by (inverse depth) x (the trajectory). Nearer layers must lose more sharpness.
    bank = PhotoBank(make_pink_photos(tmp_path / "pink"))
    extent = 8.0
    cfg = SynthConfig(
        extent_px=(extent, extent), rotation_px=(0.0, 0.0), moving_prob=0.0, noise_sigma=0.0,
        ground_prob=0.0, objects=(3, 4), object_size=(0.35, 0.6), scale_with_size=False,
    )  # fmt: skip
    bins = [(0.0, 0.08), (0.3, 0.6), (0.85, 1.0)]  # far backdrop, middle, nearest
    kernel = np.ones((2 * int(extent) + 3,) * 2, np.uint8)  # stay clear of occlusion edges
    checked = []
    for seed in range(40):
        out = render_sequence(bank, seed, 160, 160, cfg=cfg)
        depth = out["depth"][0]
        ratios = []
        for lo, hi in bins:
            inside = ((depth >= lo) & (depth <= hi)).astype(np.uint8)
            mask = cv2.erode(inside, kernel).astype(bool)
            if mask.sum() < 100:
                break
            ratios.append(_sharpness_ratio(out["blur"][0], out["sharp"][0], mask))
        if len(ratios) == len(bins):
            checked.append((seed, ratios))
        if len(checked) == 5:
            break
    assert len(checked) == 5
    for seed, (far, mid, near) in checked:
        assert far > 0.75, (seed, far)  # the backdrop hardly moves
        assert far > 1.2 * mid and mid > 1.2 * near, (seed, far, mid, near)


def test_extent_scales_with_size(bank):
    cfg = SynthConfig()
    assert cfg.scale(1280, 720) == 1.0
    assert cfg.scale(256, 256) == pytest.approx(256 / 720)
    small = [render_sequence(bank, s, 64, 64)["extent_px"] for s in range(5)]
    assert all(2 * 64 / 720 - 1e-6 <= e <= 40 * 64 / 720 + 1e-6 for e in small)


def test_write_split_layout_and_resume(bank, tmp_path):
    out = tmp_path / "synth"
    res = write_split(out, bank, "train", count=2, width=48, height=32, seed=1, frames=3)
    assert res == {"rendered": 2, "skipped": 0, "dir": str(out / "train")}
    for seq in ("000000", "000001"):
        for sub in ("blur", "sharp", "depth"):
            names = sorted(p.name for p in (out / "train" / seq / sub).iterdir())
            assert names == ["000000.png", "000001.png", "000002.png"]
    d = cv2.imread(str(out / "train/000000/depth/000001.png"), cv2.IMREAD_UNCHANGED)
    assert d.dtype == np.uint16 and d.shape == (32, 48)
    b = cv2.imread(str(out / "train/000000/blur/000001.png"), cv2.IMREAD_UNCHANGED)
    assert b.dtype == np.uint8 and b.shape == (32, 48, 3)
    meta = json.loads((out / "train" / "synth.json").read_text())
    assert meta["seed"] == 1 and meta["frames"] == 3
    # the files equal a fresh render of the same seed; a rerun renders nothing
    before = (out / "train/000001/blur/000002.png").read_bytes()
    assert write_split(out, bank, "train", 2, 48, 32, 1, frames=3)["skipped"] == 2
    (out / "train/000001/blur/000002.png").unlink()
    assert write_split(out, bank, "train", 2, 48, 32, 1, frames=3)["rendered"] == 1
    assert (out / "train/000001/blur/000002.png").read_bytes() == before
    assert not list(out.rglob("*.tmp*"))
    # other settings into the same split: refused, nothing mixed; a larger count extends it
    with pytest.raises(OutputError, match="seed differ"):
        write_split(out, bank, "train", 2, 48, 32, seed=2, frames=3)
    assert write_split(out, bank, "train", 3, 48, 32, 1, frames=3)["rendered"] == 1


def test_photobank_errors_and_downscale(tmp_path):
    with pytest.raises(InputError, match="dgn data photos"):
        PhotoBank(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no photos"):
        PhotoBank(tmp_path / "empty")
    bank = PhotoBank(make_photos(tmp_path / "p", n=1, size=(300, 100)), max_side=150)
    assert bank[0].shape == (50, 150, 3)


def test_contact_sheet(bank):
    out = render_sequence(bank, 0, 40, 30)
    sheet = contact_sheet([(out["blur"][0], out["sharp"][0], out["depth"][0])] * 2)
    assert sheet.dtype == np.uint8 and sheet.shape == (64, 128, 3)
