"""`dgn deblur-video` outputs as a new user meets them: the codec follows the container, every
option is checked before the first frame is decoded, frame count/rate/duration kept in every
container (AVI included), odd sizes just work, stills are refused, -o may be a folder."""

import re
import subprocess
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image
from test_cli_video import frames_of, leftovers, make_clip, run, summary

from dgn_cli.video import pipeline as video
from dgn_cli.video.codecs import choose_encoding
from dgn_cli.video.probe import ffmpeg_exe, probe


@pytest.fixture(scope="module")
def models(tiny_checkpoints):
    """A tiny video DGN, fresh (output = input), and the tiny depth net (as in test_cli_video)."""
    return {"video": tiny_checkpoints["identity-video"], "depth": tiny_checkpoints["depth"]}


def video_pts(path: Path) -> tuple[list[int], Fraction]:
    """The decoded frames' timestamps (framecrc) and the time base they are counted in."""
    out = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:v:0", "-f", "framecrc", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    tb = Fraction(re.search(r"^#tb 0: (\S+)", out, re.M).group(1))
    return [int(ln.split(",")[2]) for ln in out.splitlines() if not ln.startswith("#")], tb


@pytest.mark.parametrize(
    ("ext", "codec"),
    [("mp4", "h264"), ("mkv", "h264"), ("mov", "h264"), ("webm", "vp9"), ("avi", "mpeg4")],
)
def test_codec_by_container_and_timing_equal_the_source(models, tmp_path, ext, codec):
    src = make_clip(tmp_path / "clip.mp4", frames=15, fps=10)
    out = tmp_path / f"sharp.{ext}"
    doc = summary(run(models, src, out))
    info = probe(out)
    assert info.video.codec == codec
    n_in, secs_in = imageio_ffmpeg.count_frames_and_secs(str(src))
    n_out, secs_out = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert n_out == n_in == doc["frames"] == 15
    assert float(info.fps) == 10 and abs(secs_out - secs_in) < 0.1
    assert info.duration == pytest.approx(1.5, abs=0.06)
    pts, tb = video_pts(out)
    assert pts == [round(i / 10 / tb) for i in range(15)]  # 0, 0.1 s, ... no gap, no shift
    assert len(info.audio) == 1  # audio kept (copied, or e.g. Opus for WebM)
    assert leftovers(tmp_path) == []


def refuses(result, *words):
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and all(w in lines[0] for w in words), lines
    return lines[0]


def test_every_option_is_checked_before_the_first_frame(models, tmp_path, monkeypatch):
    src = make_clip(tmp_path / "clip.mp4", frames=6, audio=False)

    def no_decoding(*a, **k):
        raise AssertionError("decoding started before the options were checked")

    monkeypatch.setattr(video, "FrameDecoder", no_decoding)
    refuses(run(models, src, tmp_path / "x.webm", "--codec", "libx264"), "WebM cannot hold H.264")
    refuses(run(models, src, tmp_path / "x.mp4", "--preset", "fastt"), "--preset fastt", "medium")
    refuses(run(models, src, tmp_path / "x.webm", "--preset", "fast"), "libvpx-vp9 has no presets")
    refuses(run(models, src, tmp_path / "x.mp4", "--crf", "60"), "--crf 60", "0..51")
    refuses(run(models, src, tmp_path / "x.avi", "--pix-fmt", "yuv444p"), "mpeg4 does not take")
    refuses(run(models, src, tmp_path / "x.mp4", "--pix-fmt", "rgb9"), "--pix-fmt rgb9")
    refuses(run(models, src, tmp_path / "x.mp4", "--codec", "nope"), "--codec nope")
    refuses(run(models, src, tmp_path / "x.flv"), "x.flv", ".mp4, .mov, .mkv, .webm or .avi")
    refuses(run(models, src, tmp_path / "x.mp4", "--save-depth", tmp_path / "d.webm"), "WebM")
    assert leftovers(tmp_path) == []  # no work folder to be blamed on "an interrupted run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_codec_choice_and_aliases():
    assert choose_encoding(Path("a.MKV")).codec == "libx264"
    assert choose_encoding(Path("a.webm")).crf == 30
    avi = choose_encoding(Path("a.avi"))
    assert (avi.codec, avi.crf) == ("mpeg4", 3)
    assert "-q:v" in avi.output_args() and "-crf" not in avi.output_args()
    assert choose_encoding(Path("a.mov"), codec="hevc", preset="slow").codec == "libx265"
    assert choose_encoding(Path("a.mkv"), codec="vp9").codec == "libvpx-vp9"


def test_output_folder_gets_the_default_name(models, tmp_path):
    src = make_clip(tmp_path / "clip.mov", frames=4, audio=False)
    new = tmp_path / "new"
    doc = summary(run(models, src, f"{new}/"))
    assert doc["output"] == str(new / "clip_sharp.mov") and (new / "clip_sharp.mov").is_file()
    (tmp_path / "existing").mkdir()
    summary(run(models, src, tmp_path / "existing"))
    assert (tmp_path / "existing" / "clip_sharp.mov").is_file()
    assert leftovers(tmp_path) == [] and leftovers(new) == []


def test_odd_size_just_works(models, tmp_path):
    src = tmp_path / "odd.mkv"
    args = [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=65x49:rate=24"]
    subprocess.run([*args, "-frames:v", "5", "-c:v", "ffv1", str(src)], check=True)
    assert (probe(src).width, probe(src).height) == (65, 49)
    doc = summary(run(models, src, tmp_path / "o.mp4"))
    assert (probe(tmp_path / "o.mp4").width, probe(tmp_path / "o.mp4").height) == (66, 50)
    assert any("odd side" in n and "yuv444p" in n for n in doc["notes"])
    got = frames_of(tmp_path / "o.mp4").astype(int)
    assert np.abs(got[:, :, 65] - got[:, :, 64]).mean() < 4  # the edge repeated, not black
    exact = summary(run(models, src, tmp_path / "e.mkv", "--pix-fmt", "yuv444p"))
    assert (probe(tmp_path / "e.mkv").width, probe(tmp_path / "e.mkv").height) == (65, 49)
    assert exact["frames"] == 5


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_still_image_points_to_deblur_image(models, tmp_path, ext):
    still = tmp_path / f"photo.{ext}"
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(still)
    refuses(run(models, still, tmp_path / "o.mp4"), f"photo.{ext}", "still image", "deblur-image")
    assert not (tmp_path / "o.mp4").exists()
