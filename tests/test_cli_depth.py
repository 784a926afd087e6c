"""`dgn depth`: 16-bit raw map + colour-mapped PNG, --refined, batches, --json."""

import json

import cv2
import numpy as np
from PIL import Image
from typer.testing import CliRunner

from dgn_cli.cli import app

runner = CliRunner()
RNG = np.random.default_rng(1)


def run(ckpt, *args, weights="image"):
    """`dgn depth ARGS` with the tiny depth net and the `weights` DGN of `ckpt` (the
    tiny_checkpoints; "image" has a random last conv, so D_r differs from D_b)."""
    return runner.invoke(
        app,
        ["depth", *map(str, args), "--depth-model", str(ckpt["depth"]),
         "--weights", str(ckpt[weights]), "--device", "cpu"],
    )  # fmt: skip


def photo(path, h=36, w=52):
    cv2.imwrite(str(path), RNG.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_initial_depth_writes_16bit_and_colour_maps(tmp_path, tiny_checkpoints):
    photo(tmp_path / "p.jpg")
    r = run(tiny_checkpoints, tmp_path / "p.jpg", "-o", tmp_path / "d.png", "--json")
    assert r.exit_code == 0, r.output
    raw = cv2.imread(str(tmp_path / "d.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.shape == (36, 52)
    color = cv2.imread(str(tmp_path / "d.color.png"), cv2.IMREAD_UNCHANGED)
    assert color.dtype == np.uint8 and color.shape == (36, 52, 3)
    report = json.loads(r.stdout)
    f = report["files"][0]
    assert f["depth"] == "initial" and f["color"] == str(tmp_path / "d.color.png")
    assert 0 <= f["min"] <= f["mean"] <= f["max"] <= 1
    assert abs(raw.mean() / 65535 - f["mean"]) < 1e-3  # the raw map is the normalised depth


def test_refined_depth_differs_and_colormap_choice(tmp_path, tiny_checkpoints):
    photo(tmp_path / "p.png")
    r1 = run(tiny_checkpoints, tmp_path / "p.png", "-o", tmp_path / "init.png",
             "--precision", "fp32")  # fmt: skip
    r2 = run(tiny_checkpoints, tmp_path / "p.png", "-o", tmp_path / "ref.png", "--refined",
             "--colormap", "gray", "--precision", "fp32", "--quiet")  # fmt: skip
    assert r1.exit_code == r2.exit_code == 0, r1.output + r2.output
    init = cv2.imread(str(tmp_path / "init.png"), cv2.IMREAD_UNCHANGED).astype(int)
    ref = cv2.imread(str(tmp_path / "ref.png"), cv2.IMREAD_UNCHANGED).astype(int)
    assert np.abs(init - ref).max() > 0  # D_r = D_b + G_D(D_b, B)
    gray = cv2.imread(str(tmp_path / "ref.color.png"), cv2.IMREAD_UNCHANGED)
    assert (gray[:, :, 0] == gray[:, :, 1]).all()
    assert r2.stdout == ""  # --quiet: nothing on stdout


def test_no_colour_map_and_baseline_refused(tmp_path, tiny_checkpoints):
    photo(tmp_path / "p.png")
    r = run(tiny_checkpoints, tmp_path / "p.png", "-o", tmp_path / "d.png", "--colormap", "none")
    assert r.exit_code == 0 and not (tmp_path / "d.color.png").exists()
    r = run(tiny_checkpoints, tmp_path / "p.png", "-o", tmp_path / "e.png", "--refined",
            weights="baseline")  # fmt: skip
    assert r.exit_code == 1 and "baseline" in r.stderr


def test_folder_batch_upright_and_corrupt_file(tmp_path, tiny_checkpoints):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    photo(tmp_path / "in" / "a.png")
    stored = RNG.integers(0, 256, (40, 24, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.fromarray(stored).save(tmp_path / "in" / "sub" / "phone.jpg", exif=exif.tobytes())
    (tmp_path / "in" / "sub" / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    r = run(tiny_checkpoints, tmp_path / "in", "-o", tmp_path / "out")
    assert r.exit_code == 1 and "bad.jpg" in r.stderr
    assert (tmp_path / "out" / "a.png").is_file() and (tmp_path / "out" / "a.color.png").is_file()
    upright = cv2.imread(str(tmp_path / "out" / "sub" / "phone.png"), cv2.IMREAD_UNCHANGED)
    assert upright.shape == (24, 40)  # EXIF orientation 8 applied


def test_raw_map_must_be_16_bit_format(tmp_path, tiny_checkpoints):
    photo(tmp_path / "p.png")
    r = run(tiny_checkpoints, tmp_path / "p.png", "-o", tmp_path / "d.jpg")
    assert r.exit_code != 0 and ".png or .tiff" in r.output
