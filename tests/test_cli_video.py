"""`dgn deblur-video` end to end with tiny models: frame-exact output, audio kept, bad inputs,
crash safety, --resume, --start/--duration, --model image, --compare, --save-depth."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from typer.testing import CliRunner

from dgn_cli.cli import app
from dgn_cli.engine import Engine
from dgn_cli.video.ffmpeg import finished_segments
from dgn_cli.video.pipeline import work_dir
from dgn_cli.video.probe import ffmpeg_exe, probe

FIXTURE = Path(__file__).parent / "fixtures" / "video" / "bikes_12f.mp4"
runner = CliRunner()


@pytest.fixture(scope="module")
def models(tiny_checkpoints):
    """Tiny video (frames=5) and image DGNs, fresh (output = input), and the tiny depth net."""
    return {
        "video": tiny_checkpoints["identity-video"],
        "image": tiny_checkpoints["identity"],
        "depth": tiny_checkpoints["depth"],
    }


def make_clip(path: Path, frames=48, fps=24, size="64x48", audio=True, extra=()) -> Path:
    """A test pattern (+ a 440 Hz sine as AAC) made by the bundled ffmpeg."""
    args = [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi"]
    args += ["-i", f"testsrc=size={size}:rate={fps}"]
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    args += [*extra, "-frames:v", str(frames), "-c:v", "libx264", "-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "aac", "-t", str(frames / fps)]
    subprocess.run([*args, str(path)], check=True)
    return path


def run(models, src, out, *args, model="video"):
    cmd = ["deblur-video", str(src), "-o", str(out), "--weights", str(models[model])]
    cmd += ["--depth-model", str(models["depth"]), "--device", "cpu", "--precision", "fp32"]
    cmd += ["--model", model, "--json", *map(str, args)]
    return runner.invoke(app, cmd)


def summary(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def frames_of(path: Path) -> np.ndarray:
    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    w, h = meta["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in gen])


def ctrl_c_at(out: Path, at: int, segment_frames: int = 10):
    """An Engine.restore that raises KeyboardInterrupt at the `at`-th frame, once the encoder
    thread has finished the segments before it (on a loaded machine it lags behind the model,
    and an unfinished segment is rightly dropped: waiting keeps the tests exact)."""
    from dgn_cli.video.ffmpeg import record_path

    original, calls = Engine.restore, {"n": 0}
    last = (at - 1) // segment_frames - 1  # the last segment complete before frame `at`
    last_done = record_path(work_dir(out) / f"main_{last:06d}.nut")

    def restore(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == at:
            deadline = time.monotonic() + 60
            while last >= 0 and not last_done.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            raise KeyboardInterrupt
        return original(self, *a, **k)

    return restore


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ----------------------------------------------------------------------------- (a) frame-exact
def test_same_frames_duration_and_audio_codec(models, tmp_path):
    src = make_clip(tmp_path / "clip.mp4")
    out = tmp_path / "sharp.mp4"
    doc = summary(run(models, src, out, "--segment-frames", 20))
    n_in, secs_in = imageio_ffmpeg.count_frames_and_secs(str(src))
    n_out, secs_out = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert n_in == n_out == doc["frames"] == 48
    assert abs(secs_out - secs_in) <= 1 / 24 and doc["fps"] == 24
    info = probe(out)
    assert [s.codec for s in info.audio] == ["aac"] and doc["audio"]["audio"] == "copy"
    assert float(info.fps) == 24 and (info.width, info.height) == (64, 48)
    assert doc["output"] == str(out) and doc["device"] == "cpu" and doc["precision"] == "fp32"
    assert doc["frames_per_second"] > 0 and doc["seconds"] > 0
    assert leftovers(tmp_path) == []  # no work folder or temp file left
    assert out.stat().st_mode & 0o044  # an ordinary readable file, not mkstemp's 0600


# ----------------------------------------------------------------------------- (b) real clip
def test_real_camera_clip_end_to_end(models, tmp_path):
    out = tmp_path / "bikes_sharp.mkv"
    doc = summary(run(models, FIXTURE, out))
    assert doc["frames"] == 12 and doc["source"]["width"] == 160
    got = frames_of(out)
    assert got.shape == (12, 68, 160, 3)
    # random tiny weights barely change the frames: the output still looks like the input
    ref = frames_of(FIXTURE).astype(np.float32)
    assert np.abs(got.astype(np.float32) - ref).mean() < 40


# ----------------------------------------------------------------------------- (c) memory
MEM_SCRIPT = """
import resource, sys, torch
torch.set_num_threads(1)
from dgn_cli.engine import Engine, EngineConfig
from dgn_cli.video.pipeline import deblur_video, VideoOptions
e = Engine(EngineConfig(weights=sys.argv[3], depth_model=sys.argv[4], device="cpu",
                        precision="fp32", kind="video"))
deblur_video(e, sys.argv[1], sys.argv[2], VideoOptions(segment_frames=8))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_peak_memory_does_not_grow_with_length(models, tmp_path):
    """8 and 32 frames of 256x192, in two subprocesses run side by side (ru_maxrss, KiB)."""
    procs = {}
    for n in (8, 32):
        src = make_clip(tmp_path / f"c{n}.mp4", frames=n, size="256x192", audio=False)
        procs[n] = subprocess.Popen(
            [sys.executable, "-c", MEM_SCRIPT, str(src), str(tmp_path / f"o{n}.mp4")]
            + [str(models["video"]), str(models["depth"])],
            stdout=subprocess.PIPE,
            text=True,
        )
    peaks = {n: int(p.communicate(timeout=120)[0].split()[-1]) for n, p in procs.items()}
    for n in procs:
        assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / f"o{n}.mp4"))[0] == n
    assert abs(peaks[32] - peaks[8]) / peaks[8] < 0.10, peaks
    # Stricter: keeping one float frame per frame would add 24 x 0.6 MB = 14 MB.
    assert peaks[32] - peaks[8] < 8 * 1024, peaks


# ----------------------------------------------------------------------------- (d) crashes
def test_crash_leaves_no_output(models, tmp_path, monkeypatch):
    src = make_clip(tmp_path / "clip.mp4", frames=24)
    out = tmp_path / "sharp.mp4"
    calls = {"n": 0}
    original = Engine.restore

    def broken(self, *a, **k):
        calls["n"] += 1
        if calls["n"] > 5:
            raise RuntimeError("injected failure")
        return original(self, *a, **k)

    monkeypatch.setattr(Engine, "restore", broken)
    result = run(models, src, out, "--compare", "--save-depth", tmp_path / "d.mp4")
    assert result.exit_code != 0 and isinstance(result.exception, RuntimeError)
    assert not out.exists() and not (tmp_path / "d.mp4").exists()
    assert not (tmp_path / "sharp.compare.mp4").exists()
    assert leftovers(tmp_path) == []  # no finished segment: the work folder is gone too


def test_ctrl_c_then_resume_equals_an_uninterrupted_run(models, tmp_path, monkeypatch):
    src = make_clip(tmp_path / "clip.mp4", frames=36)
    whole = tmp_path / "whole.mp4"
    summary(run(models, src, whole, "--segment-frames", 10))
    out = tmp_path / "sharp.mp4"
    original = Engine.restore
    monkeypatch.setattr(Engine, "restore", ctrl_c_at(out, 25))
    result = run(models, src, out, "--segment-frames", 10)
    assert result.exit_code == 130 and "nothing was written" in result.output
    assert "--resume" in result.output
    assert not out.exists()
    assert sorted(p.name for p in work_dir(out).iterdir()) == [
        "lock",
        "main_000000.nut",
        "main_000000.nut.done",
        "main_000001.nut",
        "main_000001.nut.done",
        "manifest.json",
    ]  # the unfinished third segment and the logs are gone; each segment has its record
    # Without --resume or --overwrite the finished work is not thrown away.
    refused = run(models, src, out, "--segment-frames", 10)
    assert refused.exit_code == 1 and "--resume" in refused.output
    monkeypatch.setattr(Engine, "restore", original)
    # Resuming with other encoding options is refused, naming what differs.
    other = run(models, src, out, "--segment-frames", 10, "--resume", "--crf", 30)
    assert other.exit_code == 1 and "differs in encode" in other.stderr
    doc = summary(run(models, src, out, "--segment-frames", 10, "--resume"))
    assert doc["resumed_frames"] == 20 and doc["frames"] == 36
    assert np.array_equal(frames_of(out), frames_of(whole))
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_a_running_process_leaves_nothing(models, tmp_path, sig):
    # Long enough that the run cannot finish between the first segment and the signal, even
    # when this test process is descheduled for seconds on a loaded machine.
    src = make_clip(tmp_path / "clip.mp4", frames=960, audio=False)
    out = tmp_path / "sharp.mp4"
    cmd = [sys.executable, "-m", "dgn_cli", "deblur-video", str(src), "-o", str(out)]
    cmd += ["--weights", str(models["video"]), "--depth-model", str(models["depth"])]
    cmd += ["--device", "cpu", "--segment-frames", "8", "--quiet"]
    # A shell runs background jobs with SIGINT ignored, and Python keeps an ignored SIGINT
    # ignored; give the child the default disposition, as a terminal's Ctrl-C would find it.
    proc = subprocess.Popen(
        cmd,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 60
    while not (work_dir(out) / "main_000000.nut").exists() and time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(sig)
    err = proc.communicate(timeout=30)[1]
    assert proc.returncode == 130, err
    assert "interrupted; nothing was written" in err
    assert not out.exists()
    names = [p.name for p in work_dir(out).iterdir()]
    assert "manifest.json" in names and not [n for n in names if "part" in n]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".sharp.")] == [
        work_dir(out).name
    ]


# ----------------------------------------------------------------------------- (e) bad input
def test_text_file_named_mp4_is_one_clear_error(models, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 20)
    result = run(models, bad, tmp_path / "o.mp4")
    assert result.exit_code == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "notes.mp4" in lines[0] and "not a readable video" in lines[0]
    assert not (tmp_path / "o.mp4").exists()


def test_no_video_stream_and_truncated_file(models, tmp_path):
    m4a = tmp_path / "sound.m4a"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine", "-t", "1", str(m4a)], check=True
    )
    result = run(models, m4a, tmp_path / "o.mp4")
    assert result.exit_code == 1 and "sound.m4a: no video stream" in result.stderr
    clip = make_clip(tmp_path / "clip.mp4", frames=24)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    result = run(models, cut, tmp_path / "o.mp4")
    assert result.exit_code == 1 and "cut.mp4" in result.stderr
    assert not (tmp_path / "o.mp4").exists()
    # moov atom first (faststart), media data cut: ffmpeg opens it; the scan finds the damage
    fast = make_clip(tmp_path / "fast.mp4", frames=24, extra=["-movflags", "+faststart"])
    cut.write_bytes(fast.read_bytes()[: fast.stat().st_size * 6 // 10])
    result = run(models, cut, tmp_path / "o.mp4")
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 1 and len(lines) == 1
    assert "cut.mp4: the video is truncated or damaged" in lines[0]
    assert not (tmp_path / "o.mp4").exists()
    # --duration saves the readable part, with a note
    doc = summary(run(models, cut, tmp_path / "o.mp4", "--duration", "0.5"))
    assert doc["frames"] == 12 and any("damaged" in n for n in doc["notes"])


def test_existing_output_needs_overwrite(models, tmp_path):
    src = make_clip(tmp_path / "clip.mp4", frames=6, audio=False)
    out = tmp_path / "o.mp4"
    out.write_bytes(b"keep me")
    result = run(models, src, out)
    assert result.exit_code == 1 and "--overwrite" in result.stderr
    assert out.read_bytes() == b"keep me"
    same = run(models, src, src, "--overwrite")
    assert same.exit_code == 1 and "refusing to overwrite the input" in same.stderr
    summary(run(models, src, out, "--overwrite"))
    assert imageio_ffmpeg.count_frames_and_secs(str(out))[0] == 6


# ----------------------------------------------------------------------------- options
def test_start_duration_image_model_compare_and_depth(models, tmp_path):
    src = make_clip(tmp_path / "clip.mp4", frames=48)
    out = tmp_path / "part.mp4"
    depth = tmp_path / "depth.mp4"
    doc = summary(
        run(
            models,
            src,
            out,
            "--start",
            "0.5",
            "--duration",
            "1",
            "--compare",
            "--save-depth",
            depth,
            model="image",
        )  # fmt: skip
    )
    assert doc["frames"] == 24 and doc["weights"] == str(models["image"])
    n, secs = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert n == 24 and abs(secs - 1.0) <= 1 / 24
    # the cut starts at 0.5 s: its first frame is the source's frame 12
    ref = frames_of(src)[12].astype(np.float32)
    first = frames_of(out)[0].astype(np.float32)
    assert np.abs(first - ref).mean() < np.abs(first - frames_of(src)[0]).mean()
    cmp = probe(tmp_path / "part.compare.mp4")
    assert (cmp.width, cmp.height) == (2 * 64 + 8, 48) and [a.codec for a in cmp.audio] == ["aac"]
    dinfo = probe(depth)
    assert dinfo.audio == [] and imageio_ffmpeg.count_frames_and_secs(str(depth))[0] == 24
    d = frames_of(depth)
    assert (
        np.array_equal(d[..., 0], d[..., 1]) or np.abs(d[..., 0].astype(int) - d[..., 1]).max() <= 2
    )


def test_ten_bit_output_and_subtitles_converted_for_mkv(models, tmp_path):
    srt = tmp_path / "s.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,500\nhello\n")
    src = make_clip(tmp_path / "clip.mp4", frames=12, extra=["-i", str(srt), "-c:s", "mov_text"])
    out = tmp_path / "o.mkv"
    doc = summary(run(models, src, out, "--pix-fmt", "yuv420p10le", "--crf", "20"))
    info = probe(out)
    assert info.pix_fmt == "yuv420p10le"
    assert [s.codec for s in info.subtitles] == ["subrip"] and doc["audio"]["subtitles"] == "srt"
    assert [s.codec for s in info.audio] == ["aac"]


def frame_times(path: Path) -> list[float]:
    """Presentation times of every decoded frame (ffmpeg's showinfo filter)."""
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map", "0:v:0", "-vf", "showinfo"]
        + ["-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [float(t) for t in re.findall(r"pts_time:(\S+)", proc.stderr)]


def test_variable_frame_rate_keeps_every_timestamp(models, tmp_path):
    # 24 fps with two pauses (0.3 s after frame 10, 0.5 s after frame 30)
    vfr = "setpts='N/24/TB+if(gte(N,10),0.3/TB,0)+if(gte(N,30),0.5/TB,0)'"
    src = make_clip(
        tmp_path / "vfr.mp4", frames=48, audio=False, extra=["-vf", vfr, "-fps_mode", "vfr"]
    )
    assert probe(src).vfr
    out = tmp_path / "o.mp4"
    # segments of 10: the 0.3 s pause falls exactly on the first segment boundary
    doc = summary(run(models, src, out, "--segment-frames", 10))
    want, got = frame_times(src), frame_times(out)
    assert len(got) == len(want) == doc["frames"] == 48
    assert np.abs(np.array(got) - np.array(want)).max() < 1e-3
    assert any("timestamp" in n for n in doc["notes"])


def test_rotated_phone_clip_comes_out_upright(models, tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=8)
    rot = tmp_path / "rot.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-display_rotation", "90", "-i", str(clip), "-c", "copy"]
        + [str(rot)],
        check=True,
    )
    assert (probe(rot).width, probe(rot).height) == (48, 64)
    out = tmp_path / "o.mp4"
    summary(run(models, rot, out))
    info = probe(out)
    assert (info.width, info.height, info.rotation) == (48, 64, 0.0)
    assert frames_of(out).shape == (8, 64, 48, 3)


def test_audio_transcoded_only_when_the_container_refuses_it(models, tmp_path):
    src = make_clip(tmp_path / "clip.mp4", frames=12)  # AAC audio: WebM takes only Opus/Vorbis
    out = tmp_path / "o.webm"
    doc = summary(run(models, src, out, "--codec", "libvpx-vp9", "--crf", "40"))
    info = probe(out)
    assert info.video.codec == "vp9" and [a.codec for a in info.audio] == ["opus"]
    assert doc["audio"]["audio"] == "libopus"
    assert any("transcoded to libopus" in n for n in doc["notes"])
    assert imageio_ffmpeg.count_frames_and_secs(str(out))[0] == 12


def test_resume_after_a_crash_while_muxing_only_muxes(models, tmp_path, monkeypatch):
    import dgn_cli.video.pipeline as video

    src = make_clip(tmp_path / "clip.mp4", frames=15)
    out = tmp_path / "o.mp4"

    def broken(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(video, "concat_and_mux", broken)
    assert run(models, src, out, "--segment-frames", 10).exit_code == 130
    assert not out.exists() and finished_segments(work_dir(out), "main") == 2
    monkeypatch.undo()
    calls = {"n": 0}
    original = Engine.restore

    def counting(self, *a, **k):
        calls["n"] += 1
        return original(self, *a, **k)

    monkeypatch.setattr(Engine, "restore", counting)
    doc = summary(run(models, src, out, "--segment-frames", 10, "--resume"))
    assert calls["n"] == 0 and doc["resumed_frames"] == doc["frames"] == 15
    assert imageio_ffmpeg.count_frames_and_secs(str(out))[0] == 15
