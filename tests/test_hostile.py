"""Hostile inputs and faults (issue 15): nothing lost, nothing trusted blindly, no tracebacks.

Each case asserts the exit code, one line naming the file, no traceback, nothing outside the
outputs touched, and (for resume) results identical to an uninterrupted run."""

import errno
import json
import pathlib

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dgn_cli import checkpoints
from dgn_cli.cli import app
from dgn_cli.models import DGN, DGNConfig
from dgn_cli.models.depth import SmallDepthConfig, SmallDepthNet

runner = CliRunner()
TINY = dict(widths=(4, 8, 8), blocks_per_scale=1, bottom_blocks=1, sft_chs=4)


@pytest.fixture(scope="module")
def image_opts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    checkpoints.save_dgn(DGN(DGNConfig(**TINY)), d / "tiny.safetensors")
    checkpoints.save_depth_net(SmallDepthNet(SmallDepthConfig(widths=(4, 8))), d / "depth.st")
    return [
        "--weights", str(d / "tiny.safetensors"), "--depth-model", str(d / "depth.st"),
        "--device", "cpu", "--precision", "fp32",
    ]  # fmt: skip


def one_clean_line(result, *needles):
    """The error is one line on stderr, names what it should, and is no traceback."""
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert errors, result.output
    for needle in needles:
        assert any(str(needle) in ln for ln in errors), (needle, result.output)
    return errors


def tree(folder: pathlib.Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def save_png(path, h=40, w=56):
    rng = np.random.default_rng(0)
    cv2.imwrite(str(path), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return path


# ------------------------------------------------------------------ 3. image batch extras
def test_extra_that_fails_on_a_full_disk_is_made_by_the_rerun(tmp_path, image_opts, monkeypatch):
    src = save_png(tmp_path / "a.png")
    out = tmp_path / "out"
    real = pathlib.Path.write_bytes

    def full_disk(self, data):
        if ".compare." in self.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full_disk)
    cmd = ["deblur-image", str(src), "-o", str(out) + "/", *image_opts, "--compare", "--json"]
    first = runner.invoke(app, cmd)
    assert first.exit_code == 1
    errors = one_clean_line(first, out / "a.compare.png", "no space left")
    assert all(".tmp" not in ln for ln in errors)  # the real output, never the temp file
    main = (out / "a.png").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]  # no temp file left

    monkeypatch.setattr(pathlib.Path, "write_bytes", real)
    second = runner.invoke(app, cmd)
    assert second.exit_code == 0, second.output
    doc = json.loads(second.stdout)
    assert doc["summary"]["ok"] == 1 and doc["files"][0]["completed"] == [
        str(out / "a.compare.png")
    ]
    assert (out / "a.compare.png").is_file()
    assert (out / "a.png").read_bytes() == main  # kept, not rewritten
    third = runner.invoke(app, cmd)  # now complete: skipped
    assert json.loads(third.stdout)["summary"]["skipped"] == 1


def test_atomic_write_fsyncs_file_and_folder_and_names_the_target(tmp_path, monkeypatch):
    import os

    from dgn_cli import fsutil
    from dgn_cli.errors import OutputError

    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}"))
                        or real(fd))  # fmt: skip
    fsutil.write_text_atomic(tmp_path / "x.txt", "x")
    assert str(tmp_path) in synced and any(s.endswith(".tmp.txt") for s in synced)
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match=r"file/y.txt: cannot write \(a parent of it is a file"):
        fsutil.write_text_atomic(tmp_path / "file" / "y.txt", "y")
