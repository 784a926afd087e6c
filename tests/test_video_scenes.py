"""Scene cuts: the detector on synthetic frames, the window reflected inside each shot, and
`dgn deblur-video` on a clip made of two scenes equals the two shots run separately."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_cli_video import frames_of
from typer.testing import CliRunner

from dgn_cli.cli import app
from dgn_cli.video.probe import ffmpeg_exe
from dgn_cli.video.scenes import DEFAULT_SCENE_THRESHOLD, SceneDetector, distance, signature
from dgn_cli.video.window import SlidingWindow, window_indices

runner = CliRunner()
W, H = 64, 48


def scene(kind: str, n: int, first: int = 0) -> list[np.ndarray]:
    """n frames of a moving synthetic scene: 'a' = warm diagonal stripes panning right,
    'b' = cool checkerboard with a bright square drifting down."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    frames = []
    for t in range(first, first + n):
        if kind == "a":
            v = 0.5 + 0.5 * np.sin((xx + yy + 3 * t) / 5)
            img = np.stack([200 * v + 40, 120 * v + 30, 40 * v + 10], -1)
        else:
            v = (((xx + t) // 8 + yy // 8) % 2).astype(np.float32)
            img = np.stack([30 + 40 * v, 80 + 60 * v, 160 + 80 * v], -1)
            y0 = (2 * t) % (H - 12)
            img[y0 : y0 + 12, 20:32] = 250
        frames.append(img.clip(0, 255).astype(np.uint8))
    return frames


def write_lossless(path: Path, frames: list[np.ndarray], fps: int = 24) -> Path:
    """RGB frames -> an FFV1 .mkv (lossless, so the decoder gives these exact frames back)."""
    args = [ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    args += ["-s", f"{W}x{H}", "-framerate", str(fps), "-i", "pipe:0", "-c:v", "ffv1"]
    subprocess.run([*args, str(path)], input=b"".join(f.tobytes() for f in frames), check=True)
    return path


# ----------------------------------------------------------------------------- pure parts
def test_detector_finds_the_cut_and_not_the_motion():
    frames = scene("a", 10) + scene("b", 10)
    det = SceneDetector()
    cuts = [i for i, f in enumerate(frames) if det.push(signature(f))]
    assert cuts == [10] and det.scores[0] > 0.15
    off = SceneDetector(0)
    assert not any(off.push(signature(f)) for f in frames)


def accelerating_pan(n: int) -> list[np.ndarray]:
    """A blocky random texture panned 1, 2, 3, ... px per frame."""
    rng = np.random.default_rng(0)
    big = np.kron(rng.random((H // 8, 40)), np.ones((8, 8)))
    texture = (np.stack([big, big[::-1], 1 - big], -1) * 255).astype(np.uint8)
    offsets = np.cumsum(np.arange(1, n + 1)) - 1
    return [texture[:, x : x + W] for x in offsets]


def test_detector_is_adaptive_to_a_fast_pan():
    """A pan whose frame-to-frame changes grow past the threshold is no cut (the baseline
    grows with it); a fixed threshold would have cut it."""
    pan = accelerating_pan(12)
    sigs = [signature(f) for f in pan]
    assert (
        max(distance(a, b) for a, b in zip(sigs[:-1], sigs[1:], strict=True))
        > DEFAULT_SCENE_THRESHOLD
    )
    det = SceneDetector()
    assert not any(det.push(s) for s in sigs)
    fixed = SceneDetector(ratio=0)
    assert any(fixed.push(s) for s in sigs)


def test_window_is_reflected_inside_each_shot():
    win = SlidingWindow(2)
    seen = {}
    cut_at = {6, 8}  # shots [0, 6), [6, 8), [8, 12)
    for i in range(12):
        for t in win.push(f"f{i}", cut=i in cut_at):
            assert len(win.held) <= 5 + 2
            seen[t] = win.indices(t)
            assert win.items(t) == [f"f{j}" for j in seen[t]]
    for t in win.finish():
        seen[t] = win.indices(t)
    assert sorted(seen) == list(range(12))
    for first, end in [(0, 6), (6, 8), (8, 12)]:
        for t in range(first, end):
            want = [first + j for j in window_indices(t - first, end - first, 2)]
            assert seen[t] == want, t
    assert (
        seen[5] == [3, 4, 5, 4, 3] and seen[6] == [6, 7, 6, 7, 6] and seen[8] == [10, 9, 8, 9, 10]
    )


def test_a_shot_is_emitted_as_soon_as_the_cut_is_seen():
    win = SlidingWindow(2)
    out = [t for i in range(4) for t in win.push(i)]
    assert out == [0, 1]
    assert list(win.push(4, cut=True)) == [2, 3]  # no need to wait for frames 5 and 6


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def video_opts(tiny_checkpoints):
    # a video DGN whose output depends on every frame: random Conv24s (randomize_outputs);
    # an identity-initialised last conv would hide that
    return tiny_checkpoints.args("video")


def deblur(video_opts: list[str], src: Path, out: Path, *args) -> dict:
    cmd = ["deblur-video", str(src), "-o", str(out), *video_opts]
    # lossless x264 (4:4:4, crf 0): decoded outputs can be compared exactly
    cmd += ["--codec", "libx264", "--crf", "0", "--pix-fmt", "yuv444p", "--json", *args]
    result = runner.invoke(app, cmd)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_two_scene_clip_equals_the_shots_run_separately(video_opts, tmp_path):
    a, b = scene("a", 7), scene("b", 6)
    both = write_lossless(tmp_path / "both.mkv", a + b)
    doc = deblur(video_opts, both, tmp_path / "both_sharp.mkv")
    assert [c["frame"] for c in doc["scene_cuts"]] == [7]
    assert doc["scene_cuts"][0]["time"] == pytest.approx(7 / 24, abs=1e-6)
    deblur(video_opts, write_lossless(tmp_path / "a.mkv", a), tmp_path / "a_sharp.mkv")
    deblur(video_opts, write_lossless(tmp_path / "b.mkv", b), tmp_path / "b_sharp.mkv")
    got = frames_of(tmp_path / "both_sharp.mkv")
    alone = np.concatenate(
        [frames_of(tmp_path / "a_sharp.mkv"), frames_of(tmp_path / "b_sharp.mkv")]
    )
    assert got.shape == alone.shape == (13, H, W, 3)
    for t in (5, 6, 7, 8):  # the frames next to the cut
        assert np.array_equal(got[t], alone[t]), t
    assert np.array_equal(got, alone)

    # --scene-threshold 0: the window crosses the cut again, so frames next to it differ
    doc = deblur(video_opts, both, tmp_path / "mixed.mkv", "--scene-threshold", "0")
    mixed = frames_of(tmp_path / "mixed.mkv")
    assert doc["scene_cuts"] == []
    assert not np.array_equal(mixed[6], alone[6]) and not np.array_equal(mixed[7], alone[7])
    assert np.array_equal(mixed[:5], alone[:5])  # far from the cut nothing changes
