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

runner = CliRunner()


@pytest.fixture(scope="module")
def image_opts(tiny_checkpoints):
    return tiny_checkpoints.args("identity")


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


# ------------------------------------------------------------------ 1. + 4. video resume, work
import test_cli_video  # noqa: E402
from test_cli_video import ctrl_c_at, frames_of, make_clip, summary  # noqa: E402
from test_cli_video import run as run_video  # noqa: E402

models = test_cli_video.models  # the tiny video/image/depth checkpoints (module fixture)


def interrupted_run(models, src, out, monkeypatch, at=25):
    """A run stopped by Ctrl-C at the `at`-th frame (segments of 10 frames), once the segments
    before it are finished (test_cli_video.ctrl_c_at)."""
    from dgn_cli.engine import Engine

    original = Engine.restore
    monkeypatch.setattr(Engine, "restore", ctrl_c_at(out, at))
    assert run_video(models, src, out, "--segment-frames", 10).exit_code == 130
    monkeypatch.setattr(Engine, "restore", original)


@pytest.mark.parametrize("damage", ["empty", "truncated", "flipped", "no-record"])
def test_resume_remakes_a_damaged_segment(models, tmp_path, monkeypatch, damage):
    from dgn_cli.video.pipeline import work_dir

    src = make_clip(tmp_path / "clip.mp4", frames=36)
    whole = tmp_path / "whole.mp4"
    summary(run_video(models, src, whole, "--segment-frames", 10))
    out = tmp_path / "sharp.mp4"
    interrupted_run(models, src, out, monkeypatch)
    seg = work_dir(out) / "main_000000.nut"
    data = seg.read_bytes()
    if damage == "empty":
        seg.write_bytes(b"")
    elif damage == "truncated":
        seg.write_bytes(data[: len(data) // 3])
    elif damage == "flipped":
        flip_two_bytes(seg, 0.6)
    else:
        (work_dir(out) / "main_000000.nut.done").unlink()
    result = run_video(models, src, out, "--segment-frames", 10, "--resume")
    doc = summary(result)
    assert doc["frames"] == 36 and doc["resumed_frames"] == 10  # segment 1 kept, 0 made again
    assert any("made again" in n and "main_000000.nut" in n for n in doc["notes"])
    assert np.array_equal(frames_of(out), frames_of(whole))
    assert not work_dir(out).exists()


def test_a_segment_damaged_after_the_check_never_reaches_the_output(models, tmp_path, monkeypatch):
    import dgn_cli.video.pipeline as video

    src = make_clip(tmp_path / "clip.mp4", frames=15, audio=False)
    out = tmp_path / "o.mp4"
    real = video.FrameDecoder.close

    def close_then_damage(self):  # the last step before the mux: as if the disk lost data
        real(self)
        seg = video.work_dir(out) / "main_000000.nut"
        seg.write_bytes(seg.read_bytes()[:100])

    monkeypatch.setattr(video.FrameDecoder, "close", close_then_damage)
    result = run_video(models, src, out, "--segment-frames", 10)
    assert result.exit_code == 1 and not out.exists()
    one_clean_line(result, "main_000000.nut", "missing or damaged")


def test_final_frame_count_is_checked_before_the_rename(models, tmp_path, monkeypatch):
    import dgn_cli.video.pipeline as video

    src = make_clip(tmp_path / "clip.mp4", frames=15, audio=False)
    out = tmp_path / "o.mp4"
    monkeypatch.setattr(video, "count_frames", lambda path: 6)  # as if the mux lost frames
    result = run_video(models, src, out, "--segment-frames", 10)
    assert result.exit_code == 1 and not out.exists()
    one_clean_line(result, out, "6 frames instead of the source's 15")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".o.mp4.dgn-work", "clip.mp4"]


def test_symlinked_work_folder_is_refused_and_its_target_untouched(models, tmp_path):
    from dgn_cli.video.pipeline import work_dir

    src = make_clip(tmp_path / "clip.mp4", frames=12, audio=False)
    victim = tmp_path / "victim"
    victim.mkdir()
    for name in ("main_000000.nut", "manifest.json", "lock", "notes.txt"):
        (victim / name).write_text("precious " + name)
    before = tree(victim)
    out = tmp_path / "o.mp4"
    work_dir(out).symlink_to(victim)
    for extra in ([], ["--resume"], ["--overwrite"]):
        result = run_video(models, src, out, *extra)
        assert result.exit_code == 1 and not out.exists()
        one_clean_line(result, work_dir(out), "symbolic link")
        assert tree(victim) == before


def test_failed_run_deletes_only_what_it_created(models, tmp_path, monkeypatch):
    from dgn_cli.engine import Engine
    from dgn_cli.video.pipeline import work_dir

    src = make_clip(tmp_path / "clip.mp4", frames=12, audio=False)
    out = tmp_path / "o.mp4"
    work_dir(out).mkdir()
    (work_dir(out) / "mine.txt").write_text("not the run's")
    (work_dir(out) / "main_000005.nut").symlink_to(tmp_path / "clip.mp4")

    def broken(self, *a, **k):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(Engine, "restore", broken)
    run_video(models, src, out)
    assert (work_dir(out) / "mine.txt").read_text() == "not the run's"
    assert (tmp_path / "clip.mp4").is_file() and (work_dir(out) / "main_000005.nut").is_symlink()


def test_a_second_process_writing_the_same_output_is_refused(models, tmp_path):
    import subprocess
    import sys

    src = make_clip(tmp_path / "clip.mp4", frames=12, audio=False)
    out = tmp_path / "o.mp4"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from dgn_cli.video.pipeline import WorkLock; WorkLock(Path(sys.argv[1])); "
         "print('locked', "
         "flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = run_video(models, src, out)
        assert result.exit_code == 1 and not out.exists()
        one_clean_line(result, out, "another dgn process is writing this output")
    finally:
        holder.kill()
        holder.wait()
    summary(run_video(models, src, out))  # the lock went with the process


def test_concat_protocol_file_name_is_read_as_a_file(models, tmp_path, monkeypatch):
    make_clip(tmp_path / "one.mp4", frames=20, audio=False)
    make_clip(tmp_path / "two.mp4", frames=20, audio=False)
    src = make_clip(tmp_path / "concat:one.mp4|two.mp4", frames=7, audio=False)
    monkeypatch.chdir(tmp_path)
    doc = summary(run_video(models, src.name, "out.mp4", "--model", "image", model="image"))
    assert doc["frames"] == 7 and len(frames_of(tmp_path / "out.mp4")) == 7


def test_output_under_a_file_and_ffmpeg_disk_errors_are_one_line(models, tmp_path):
    from dgn_cli.video.ffmpeg import disk_error

    src = make_clip(tmp_path / "clip.mp4", frames=6, audio=False)
    (tmp_path / "afile").write_text("")
    result = run_video(models, src, tmp_path / "afile" / "o.mp4")
    assert result.exit_code == 1
    one_clean_line(result, tmp_path / "afile", "cannot write")
    assert disk_error(228) == "no space left on the device"  # ffmpeg's exit for ENOSPC
    assert disk_error(256 - errno.EROFS) == "read-only file system" and disk_error(1) is None


# ------------------------------------------------------------------ untrusted images, tiles
def png_header_only(path: pathlib.Path, width: int, height: int) -> pathlib.Path:
    """A tiny PNG whose header claims width x height (8-bit RGB) and whose data is junk."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1000)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


def test_pixel_limit_is_checked_before_decoding_and_the_batch_goes_on(tmp_path, image_opts):
    src = tmp_path / "in"
    src.mkdir()
    png_header_only(src / "huge.png", 100000, 100000)
    png_header_only(src / "bomb.png", 20000, 20000)
    save_png(src / "ok.png")
    out = tmp_path / "out"
    result = runner.invoke(app, ["deblur-image", str(src), "-o", str(out), *image_opts])
    assert result.exit_code == 1
    errors = one_clean_line(result, src / "huge.png", src / "bomb.png", "--max-pixels")
    assert len(errors) == 2 and "100000x100000 is 10000 megapixels" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["ok.png"]  # the batch went on
    # The limit is an option: a small one refuses an ordinary image, in the same clean way.
    result = runner.invoke(app, ["depth", str(src / "ok.png"), "-o", str(tmp_path / "d.png"),
                                 *image_opts, "--max-pixels", "1000"])  # fmt: skip
    assert result.exit_code == 1
    one_clean_line(result, src / "ok.png", "more than the limit", "--max-pixels 2240")


def test_animated_webp_says_only_the_first_frame_is_used(tmp_path, image_opts):
    from PIL import Image

    frames = [Image.new("RGB", (48, 40), c) for c in ("red", "blue", "green")]
    src = tmp_path / "anim.webp"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=100, lossless=True)
    result = runner.invoke(
        app, ["deblur-image", str(src), "-o", str(tmp_path / "o.webp"), *image_opts, "--json"]
    )
    assert result.exit_code == 0, result.output
    notes = json.loads(result.stdout)["files"][0]["notes"]
    assert "animated image: only the first of its 3 frames is used" in notes


@pytest.mark.parametrize("tile", ["1", "33"])
def test_tiny_tiles_are_refused_in_one_line(tmp_path, image_opts, tile):
    src = save_png(tmp_path / "a.png", 320, 480)
    args = ["--tile", tile, "--tile-overlap", "0"]
    result = runner.invoke(app, ["deblur-image", str(src), "-o", str(tmp_path / "o.png"),
                                 *image_opts, *args])  # fmt: skip
    assert result.exit_code == 1 and not (tmp_path / "o.png").exists()
    one_clean_line(result, f"--tile {tile} is too small", "at least 64")


@pytest.mark.parametrize("shape", [(0, 0), (0, 5, 3), (4, 0, 3)])
def test_api_rejects_empty_arrays_naming_the_shape(shape):
    from dgn_cli.api import Deblurrer

    with pytest.raises(ValueError, match=rf"empty image: shape \({shape[0]}, {shape[1]}"):
        Deblurrer.__new__(Deblurrer).deblur(np.zeros(shape, np.uint8))


# ------------------------------------------------------------------ checkpoint metadata
@pytest.mark.parametrize(
    "config, says",
    [
        ('{"widths": [4, 8, 8], "colour": "red"}', "unknown 'dgn_config' field(s) 'colour'"),
        ('{"widths": [4, 8, 8]', "not valid JSON"),
        ('{"frames": 2, "widths": [4, 8, 8]}', "frames must be odd"),
        ("[4, 8, 8]", "is a JSON list, not an object"),
        ('{"widths": [40000, 40000, 40000]}', "field 'widths' has the bad value"),
        ('{"widths": [4096, 4096, 4096]}', "M parameters (limit 500 M); refusing"),
        ('{"widths": "4,8,8"}', "field 'widths' has the bad value"),
        ('{"blocks_per_scale": true}', "field 'blocks_per_scale' has the bad value"),
    ],
)
def test_checkpoint_config_is_validated_before_anything_is_built(tmp_path, config, says):
    from safetensors.torch import save_file

    path = tmp_path / "evil.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"dgn_config": config})
    result = runner.invoke(app, ["deblur-image", str(save_png(tmp_path / "a.png")),
                                 "-o", str(tmp_path / "o.png"), "--weights", str(path),
                                 "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 1 and not (tmp_path / "o.png").exists()
    one_clean_line(result, path, says)


def test_depth_config_is_validated_too(tmp_path):
    from safetensors.torch import save_file

    from dgn_cli.errors import CheckpointError

    path = tmp_path / "d.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"depth_config": '{"input_scale": 7}'})
    with pytest.raises(CheckpointError, match=r"d.safetensors: bad 'depth_config' \(input_scale"):
        checkpoints.load_depth_estimator(path)


def test_weights_given_by_path_show_their_sha256_and_are_checked_when_named(tmp_path, image_opts):
    import shutil

    weights = pathlib.Path(image_opts[1])
    given = tmp_path / "dgn-image.safetensors"  # the name of a registry entry, other bytes
    shutil.copy(weights, given)
    digest = checkpoints.sha256_file(given)
    opts = ["--weights", str(given), *image_opts[2:]]
    src = save_png(tmp_path / "a.png")
    cmd = ["deblur-image", str(src), "-o", str(tmp_path / "o.png"), *opts, "--json"]
    result = runner.invoke(app, cmd)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["weights_sha256"] == digest
    assert f"sha256 {digest}" in result.stderr  # the verbose log line
    # A .sha256 file beside it that names other bytes: refused, naming the file.
    given.with_name(given.name + ".sha256").write_text("0" * 64 + "  dgn-image.safetensors\n")
    result = runner.invoke(app, [*cmd, "--overwrite"])
    assert result.exit_code == 1
    one_clean_line(result, given, "does not match", ".sha256")
    # A manifest beside it with an entry for this file name: checked the same way.
    given.with_name(given.name + ".sha256").unlink()
    entry = {"name": "mine", "kind": "dgn", "architecture": "DGN", "source": {"file": given.name},
             "sha256": "1" * 64, "status": "trained", "licence": "MIT"}  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps({"version": 1, "entries": [entry]}))
    result = runner.invoke(app, [*cmd, "--overwrite"])
    assert result.exit_code == 1
    one_clean_line(result, given, "does not match")


# ------------------------------------------------------------------ train --export
@pytest.mark.parametrize("name", ["../../x", "/tmp/x", "a/b", "Dgn", ".hidden", "a..b", ""])
def test_export_name_is_a_registry_name_checked_before_training(tmp_path, name, monkeypatch):
    from dgn_cli import train as training

    started = []
    monkeypatch.setattr(training, "train", lambda *a, **k: started.append(1))
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--out", str(out), "--export", name,
                                 "--export-dir", str(tmp_path / "w"), "--quiet"])  # fmt: skip
    assert result.exit_code in (1, 2) and not started  # refused before any training
    if name:
        one_clean_line(result, "--export", "registry name")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written anywhere


def test_export_dir_with_a_broken_manifest_is_refused_up_front(tmp_path, monkeypatch):
    from dgn_cli import train as training

    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("training started"))
    weights = tmp_path / "w"
    weights.mkdir()
    (weights / "manifest.json").write_text("{not json")
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "run"), "--export", "mine",
                                 "--export-dir", str(weights), "--quiet"])  # fmt: skip
    assert result.exit_code == 1
    one_clean_line(result, weights / "manifest.json", "not a readable checkpoint manifest")


def test_probe_and_scan_have_a_time_limit(tmp_path, monkeypatch):
    import subprocess

    from dgn_cli.errors import InputError
    from dgn_cli.video import probe as video_probe

    src = make_clip(tmp_path / "clip.mp4", frames=4, audio=False)
    info = video_probe.probe(src)
    seen = []

    def slow(args, **kw):
        seen.append((args[-1] if "-f" not in args else args[args.index("-i") + 1], kw["timeout"]))
        raise subprocess.TimeoutExpired(args, kw["timeout"])

    monkeypatch.setattr(subprocess, "run", slow)
    with pytest.raises(InputError, match=r"clip.mp4: ffmpeg needed more than 120 s"):
        video_probe.probe(src)
    with pytest.raises(InputError, match=r"clip.mp4: ffmpeg needed more than \d+ s"):
        video_probe.scan(info)
    assert all(path == "file:" + str(src.resolve()) and t > 0 for path, t in seen)


def test_training_data_of_mixed_sizes_is_refused_before_any_depth_map(tmp_path):
    import cv2

    from dgn_cli.data.datasets import PairedFolderDataset
    from dgn_cli.errors import InputError as DataInputError

    for sub, size in (("blur", (40, 30)), ("sharp", (40, 30))):
        folder = tmp_path / "train" / "seq0" / sub
        folder.mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(folder / f"{i:03d}.png"), np.zeros((size[1], size[0], 3), np.uint8))
    odd = tmp_path / "train" / "seq0" / "blur" / "001.png"
    cv2.imwrite(str(odd), np.zeros((32, 40, 3), np.uint8))

    class NeverCalled(torch.nn.Module):
        def forward(self, x):  # pragma: no cover - the point is that it never runs
            raise AssertionError("the depth cache was started before the sizes were checked")

    with pytest.raises(DataInputError, match=r"001\.png: 40x32, but 000\.png"):
        PairedFolderDataset(tmp_path, "train", crop=16, depth_estimator=NeverCalled())
