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


# ------------------------------------------------------------------ 2. training checkpoints
def flip_two_bytes(path: pathlib.Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    i = int(len(data) * at)
    data[i] ^= 0xFF
    data[i + 7] ^= 0x55
    path.write_bytes(bytes(data))


@pytest.fixture
def trained_run(tmp_path):
    from test_train import cfg, data, run

    from dgn_cli.train import train

    c = cfg(steps=3)
    train(c, run(tmp_path, "run", ckpt_every=1), datasets=data(c))
    return tmp_path / "run", c, data, run


def test_flipped_bytes_in_a_training_checkpoint_are_refused(trained_run):
    from dgn_cli.errors import CheckpointError
    from dgn_cli.train import load_checkpoint

    out = trained_run[0]
    ckpt, prev = out / "checkpoint.pt", out / "checkpoint.prev.pt"
    assert load_checkpoint(ckpt)["step"] == 3 and load_checkpoint(prev)["step"] == 2
    flip_two_bytes(ckpt)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(ckpt)
    msg = str(e.value)
    assert str(ckpt) in msg and "corrupt" in msg and "step 2" in msg and "\n" not in msg
    # Through the CLI: exit 1, one line naming the file, no traceback, nothing rewritten.
    before = ckpt.read_bytes()
    result = runner.invoke(app, ["train", "--out", str(out), "--resume", "--quiet"])
    assert result.exit_code == 1
    one_clean_line(result, ckpt, "corrupt")
    assert ckpt.read_bytes() == before


def test_a_crash_while_saving_keeps_the_last_good_checkpoint(trained_run, monkeypatch):
    from dgn_cli.errors import OutputError
    from dgn_cli.train import load_checkpoint, train

    out, c, data, run = trained_run
    good = (out / "checkpoint.pt").read_bytes()
    real = torch.save

    def full_disk(obj, f, *a, **k):
        real(obj, f, *a, **k)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    longer = c.__class__(**{**c.__dict__, "steps": 5})
    with pytest.raises(OutputError, match=r"checkpoint.pt: cannot write \(no space left"):
        train(longer, run(out.parent, "run", ckpt_every=1), resume=True,
              resume_overrides={"steps": 5}, datasets=data(longer))  # fmt: skip
    assert (out / "checkpoint.pt").read_bytes() == good
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 3
    assert sorted(p.name for p in out.iterdir() if "checkpoint" in p.name) == [
        "checkpoint.prev.pt",
        "checkpoint.pt",
    ]


def test_empty_and_foreign_checkpoints_give_a_real_message(tmp_path):
    from dgn_cli.errors import CheckpointError
    from dgn_cli.train import load_checkpoint

    empty = tmp_path / "checkpoint.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"checkpoint.pt: empty file \(0 bytes\)"):
        load_checkpoint(empty)
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"w.pth: empty file \(0 bytes\)"):
        checkpoints.load_state_dict_file(weights)
    for name in ("w.safetensors", "x.bin"):
        (tmp_path / name).write_bytes(b"\x00")  # not empty, not a checkpoint: never "()"
        with pytest.raises(CheckpointError, match=rf"{name}: .*\(\S[^()]*\S\)"):
            checkpoints.load_state_dict_file(tmp_path / name)
