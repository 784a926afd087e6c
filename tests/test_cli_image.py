"""`dgn deblur-image` through the CLI: batches, fidelity (16-bit, gray, alpha, EXIF), errors."""

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dgn_cli.cli import app

runner = CliRunner()
RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def identity(tiny_checkpoints):
    """Options for a DGN whose output equals its input (to test the I/O path exactly)."""
    return tiny_checkpoints.args("identity")


@pytest.fixture(scope="module")
def tiny(tiny_checkpoints):
    """Options for a DGN with a random last conv: it changes its input."""
    return tiny_checkpoints.args("image")


def run(*args):
    return runner.invoke(app, ["deblur-image", *map(str, args)])


def rgb(h=40, w=56, dtype=np.uint8, channels=3):
    top = 65535 if dtype == np.uint16 else 255
    return RNG.integers(0, top + 1, size=(h, w, channels)).astype(dtype)


def test_one_file_json_report(tmp_path, tiny):
    src = rgb()
    cv2.imwrite(str(tmp_path / "in.png"), src)
    r = run(tmp_path / "in.png", "-o", tmp_path / "out.png", *tiny, "--precision", "fp32",
            "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["device"] == "cpu" and report["precision"] == "fp32"
    assert report["summary"] == {"ok": 1, "skipped": 0, "failed": 0, "total": 1}
    f = report["files"][0]
    assert f["status"] == "ok" and (f["width"], f["height"], f["bits"]) == (56, 40, 8)
    assert f["tiles"] == 1 and f["output"] == str(tmp_path / "out.png")
    out = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == src.shape and out.dtype == np.uint8
    assert not np.array_equal(out, src)  # the (random) network did change it
    assert "cpu" in r.stderr and "fp32" in r.stderr  # device and precision reported


def test_folder_and_glob_batch_mirror_tree_and_corrupt_file(tmp_path, identity):
    (tmp_path / "in" / "a" / "b").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "in" / "x.png"), rgb())
    cv2.imwrite(str(tmp_path / "in" / "a" / "b" / "y.jpg"), rgb())
    (tmp_path / "in" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    (tmp_path / "more").mkdir()
    cv2.imwrite(str(tmp_path / "more" / "z.png"), rgb())
    r = run(tmp_path / "in", str(tmp_path / "more") + "/*.png", "-o", tmp_path / "out",
            *identity)  # fmt: skip
    assert r.exit_code == 1
    assert (tmp_path / "out" / "x.png").is_file()
    assert (tmp_path / "out" / "a" / "b" / "y.jpg").is_file()
    assert (tmp_path / "out" / "z.png").is_file()
    assert not (tmp_path / "out" / "a" / "broken.png").exists()
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "broken.png" in errors[0]
    assert "3 written, 0 skipped, 1 failed (broken.png)" in r.stderr


def test_existing_outputs_skipped_unless_overwrite_and_input_never_overwritten(tmp_path, identity):
    cv2.imwrite(str(tmp_path / "a.png"), rgb())
    (tmp_path / "out.png").write_bytes(b"keep")
    r = run(tmp_path / "a.png", "-o", tmp_path / "out.png", *identity)
    assert r.exit_code == 0 and "skip" in r.stderr
    assert (tmp_path / "out.png").read_bytes() == b"keep"
    r = run(tmp_path / "a.png", "-o", tmp_path / "out.png", *identity, "--overwrite")
    assert r.exit_code == 0 and cv2.imread(str(tmp_path / "out.png")) is not None
    before = (tmp_path / "a.png").read_bytes()
    r = run(tmp_path / "a.png", "-o", tmp_path / "a.png", *identity, "--overwrite")
    assert r.exit_code == 1 and "refusing to overwrite an input" in r.stderr
    assert (tmp_path / "a.png").read_bytes() == before
    assert not list(tmp_path.glob(".*tmp*"))  # no temp files left behind


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_bit_depth_gray_and_alpha_kept_exactly(tmp_path, identity, dtype):
    color, gray, rgba = (
        rgb(dtype=dtype),
        rgb(dtype=dtype, channels=1)[:, :, 0],
        rgb(dtype=dtype, channels=4),
    )
    for name, arr in (("c.png", color), ("g.png", gray), ("a.png", rgba)):
        cv2.imwrite(str(tmp_path / name), arr)
    r = run(tmp_path / "c.png", tmp_path / "g.png", tmp_path / "a.png", "-o", tmp_path / "o",
            *identity, "--precision", "fp32", "--tile", "0")  # fmt: skip
    assert r.exit_code == 0, r.output
    for name, arr in (("c.png", color), ("g.png", gray), ("a.png", rgba)):
        out = cv2.imread(str(tmp_path / "o" / name), cv2.IMREAD_UNCHANGED)
        assert out.dtype == dtype and out.shape == arr.shape, name
        np.testing.assert_array_equal(out, arr)  # identity network: bit-exact through the engine


def test_rgba_alpha_untouched_by_a_real_network(tmp_path, tiny):
    src = rgb(channels=4)
    cv2.imwrite(str(tmp_path / "a.png"), src)
    r = run(tmp_path / "a.png", "-o", tmp_path / "o.png", *tiny)
    assert r.exit_code == 0, r.output
    out = cv2.imread(str(tmp_path / "o.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(out[:, :, 3], src[:, :, 3])
    assert not np.array_equal(out[:, :, :3], src[:, :, :3])


def test_exif_rotated_jpeg_comes_out_upright(tmp_path, identity):
    upright = np.zeros((48, 80, 3), np.uint8)
    upright[:12, :24] = (255, 0, 0)  # red block top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated; viewers turn it 90 degrees clockwise
    exif[0x010F] = "PhoneMaker"
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))).save(
        tmp_path / "phone.jpg", quality=98, exif=exif.tobytes()
    )
    r = run(tmp_path / "phone.jpg", "-o", tmp_path / "sharp.jpg", *identity)
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "sharp.jpg") as im:
        assert im.size == (80, 48)
        assert im.getexif().get(0x0112) == 1 and im.getexif().get(0x010F) == "PhoneMaker"
        px = np.asarray(im)
    assert px[2:10, 2:20, 0].min() > 200 and px[30:, 40:, 0].max() < 60


def test_save_depth_and_compare(tmp_path, tiny):
    cv2.imwrite(str(tmp_path / "in.png"), rgb())
    r = run(tmp_path / "in.png", "-o", tmp_path / "out.jpg", *tiny, "--save-depth", "--compare",
            "--json", "--quiet")  # fmt: skip
    assert r.exit_code == 0, r.output
    f = json.loads(r.stdout)["files"][0]
    depth = cv2.imread(f["depth"], cv2.IMREAD_UNCHANGED)
    assert f["depth"].endswith("out.depth.png") and depth.dtype == np.uint16
    assert depth.shape == (40, 56)
    compare = cv2.imread(f["compare"])
    assert f["compare"].endswith("out.compare.jpg") and compare.shape == (40, 3 * 56 + 16, 3)


def test_tiles_and_progress_options(tmp_path, tiny):
    cv2.imwrite(str(tmp_path / "in.png"), rgb(200, 300))
    r = run(tmp_path / "in.png", "-o", tmp_path / "o.png", *tiny, "--tile", "128",
            "--tile-overlap", "32", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    f = json.loads(r.stdout)["files"][0]
    assert f["tile"] == 128 and f["tiles"] == 6
    r = run(tmp_path / "in.png", "-o", tmp_path / "p.png", *tiny, "--tile", "100",
            "--tile-overlap", "64")  # fmt: skip
    assert r.exit_code == 1 and "more than half" in r.stderr


def test_random_weights_said_loudly(tmp_path):
    cv2.imwrite(str(tmp_path / "in.png"), rgb(16, 16))
    r = run(tmp_path / "in.png", "-o", tmp_path / "o.png", "--weights", "random", "--device",
            "cpu", "--quiet")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "RANDOM" in r.stderr and "NOT deblurred" in r.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_device_cuda_without_cuda_exits_1(tmp_path, identity):
    cv2.imwrite(str(tmp_path / "in.png"), rgb())
    args = [a for a in identity if a not in ("--device", "cpu")]
    r = run(tmp_path / "in.png", "-o", tmp_path / "o.png", *args, "--device", "cuda")
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1 and "CUDA is not available" in r.stderr
    assert not (tmp_path / "o.png").exists()


def test_missing_input_and_bad_format(tmp_path, identity):
    r = run(tmp_path / "nope.png", "-o", tmp_path / "o.png", *identity)
    assert r.exit_code == 1 and "nope.png: no such file" in r.stderr
    cv2.imwrite(str(tmp_path / "in.png"), rgb())
    r = run(tmp_path / "in.png", "-o", tmp_path / "o.gif", *identity)
    assert r.exit_code == 1 and "o.gif" in r.stderr


def test_output_folder_inside_or_equal_to_the_input_folder(tmp_path, identity):
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), rgb())
    r = run(tmp_path / "in", "-o", tmp_path / "in", *identity)
    assert r.exit_code == 1 and "inside the output folder" in r.stderr
    for _ in range(2):  # a rerun does not deblur its own outputs
        r = run(tmp_path / "in", "-o", tmp_path / "in" / "sharp", *identity, "--json")
        assert r.exit_code == 0, r.output
        assert [f["input"] for f in json.loads(r.stdout)["files"]] == [
            str(tmp_path / "in" / "a.png")
        ]
    assert not (tmp_path / "in" / "sharp" / "sharp").exists()
