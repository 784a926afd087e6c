"""Pure parts of the video pipeline: the window, ffmpeg report parsing, concat lists, mux plans."""

from fractions import Fraction
from pathlib import Path

import pytest

from dgn_cli.errors import InputError
from dgn_cli.tensors import reflect_index as reflect
from dgn_cli.video.ffmpeg import EncodeSettings, FrameTimes, mux_plans, write_concat_list
from dgn_cli.video.probe import parse_report
from dgn_cli.video.window import SlidingWindow, window_indices


def test_reflection_at_both_ends():
    assert window_indices(0, 10, 2) == [2, 1, 0, 1, 2]
    assert window_indices(1, 10, 2) == [1, 0, 1, 2, 3]
    assert window_indices(5, 10, 2) == [3, 4, 5, 6, 7]
    assert window_indices(9, 10, 2) == [7, 8, 9, 8, 7]
    assert window_indices(8, 10, 2) == [6, 7, 8, 9, 8]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_short_clips_stay_in_range(n):
    for t in range(n):
        idx = window_indices(t, n, 2)
        assert len(idx) == 5 and idx[2] == t and all(0 <= i < n for i in idx)
    assert reflect(-7, 1) == 0


@pytest.mark.parametrize("n", [1, 2, 4, 9])
def test_sliding_window_emits_every_frame_once_with_bounded_memory(n):
    win = SlidingWindow(2)
    seen = []

    def take(ts):
        for t in ts:
            assert len(win.held) <= 5
            assert win.items(t) == [f"f{i}" for i in win.indices(t)]
            seen.append(t)

    for i in range(n):
        take(win.push(f"f{i}"))
    take(win.finish())
    assert seen == list(range(n))
    assert win.indices(n - 1) == window_indices(n - 1, n, 2)


def test_image_window_is_the_frame():
    win = SlidingWindow(0)
    out = [t for i in range(3) for t in win.push(i)] + list(win.finish())
    assert out == [0, 1, 2] and len(win.held) <= 1


REPORT = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'phone.mov':
  Metadata:
    major_brand     : qt
  Duration: 00:01:02.50, start: 0.000000, bitrate: 17000 kb/s
  Stream #0:0[0x1](und): Video: hevc (Main 10) (hvc1 / 0x31637668), yuv420p10le(tv, bt709), \
1920x1080, 16000 kb/s, 29.97 fps, 29.97 tbr, 600 tbn (default)
    Side data:
      displaymatrix: rotation of -90.00 degrees
  Stream #0:1[0x2](eng): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, stereo, fltp, 256 kb/s
  Stream #0:2[0x3](und): Subtitle: mov_text (tx3g / 0x67337874), 0 kb/s
  Stream #0:3[0x4](und): Video: mjpeg (Baseline), yuvj420p(pc), 320x240, 90k tbn (attached pic)
At least one output file must be specified
"""


def test_parse_report_rotation_ntsc_bit_depth_streams():
    info = parse_report(REPORT, Path("phone.mov"))
    assert (info.width, info.height) == (1080, 1920)  # rotated for display
    assert info.fps == Fraction(30000, 1001) and not info.vfr
    assert info.duration == pytest.approx(62.5)
    assert info.pix_fmt == "yuv420p10le" and info.high_bit_depth
    assert (info.color_matrix, info.color_range) == ("bt709", "tv")
    assert [(s.index, s.codec, s.language) for s in info.audio] == [(1, "aac", "eng")]
    assert [s.codec for s in info.subtitles] == ["mov_text"]
    assert info.video.index == 0 and info.frames_estimate == round(62.5 * 30000 / 1001)


def test_parse_report_vfr_and_no_video():
    vfr = REPORT.replace("29.97 fps, 29.97 tbr", "24.31 fps, 30 tbr")
    assert parse_report(vfr, Path("a.mp4")).vfr
    audio_only = "\n".join(ln for ln in REPORT.splitlines() if "Video:" not in ln)
    with pytest.raises(InputError, match="a.m4a: no video stream"):
        parse_report(audio_only, Path("a.m4a"))


def test_concat_list_durations_do_not_drift(tmp_path):
    segs = [tmp_path / f"main_{k:06d}.nut" for k in range(3)]
    fps = 30000 / 1001
    write_concat_list(tmp_path / "l.txt", segs, [10 / fps, 10 / fps, 3 / fps])
    lines = (tmp_path / "l.txt").read_text().splitlines()
    assert lines[0] == "ffconcat version 1.0" and lines[1] == "file 'main_000000.nut'"
    total = sum(int(ln.split()[1].removesuffix("us")) for ln in lines if ln.startswith("duration"))
    assert total == round(23 / fps * 1e6)


def test_mux_plans_copy_first_then_convert():
    info = parse_report(REPORT, Path("phone.mov"))
    plans = [(p.audio, p.subtitles) for p in mux_plans(info, ".mp4", True)]
    assert plans[0] == ("copy", "copy") and ("copy", "mov_text") in plans
    assert plans[-1] == ("aac", "none")
    assert [(p.audio, p.subtitles) for p in mux_plans(info, ".webm", True)][3] == (
        "libopus",
        "copy",
    )
    assert [(p.audio, p.subtitles) for p in mux_plans(info, ".mp4", False)] == [("none", "none")]


def test_encode_settings_args():
    s = EncodeSettings(pix_fmt="yuv420p10le", color_matrix="bt709", color_range="tv")
    args = s.output_args()
    assert s.bits16 and args[-2:] == ["-pix_fmt", "yuv420p10le"]
    assert "scale=out_color_matrix=bt709:out_range=tv" in args and "-crf" in args
    assert "-b:v" in EncodeSettings(codec="libvpx-vp9").output_args()
    assert not EncodeSettings().bits16


def test_frame_times_expression_and_durations():
    times = FrameTimes(Fraction(1, 1000), [0, 40, 80, 500, 540], step=40)
    expr = times.setpts(1, 4)  # frames 1..4, relative to frame 1
    assert expr.startswith("settb=1/1000,setpts='")
    body = expr.split("'")[1]
    for n, want in enumerate([0, 40, 460, 500]):  # evaluate the if-tree by hand
        e = body
        while e.startswith("if("):
            cond, a, b = _split_if(e)
            e = a if n < int(cond.removeprefix("lt(N,").rstrip(")")) else b
        assert int(e) == want
    assert times.ticks(5) == 580 and times.duration(3, 2) == pytest.approx(0.08)
    assert times.duration(0, 5) == pytest.approx(0.58)


def _split_if(e: str) -> tuple[str, str, str]:
    inner, depth, parts, cur = e[3:-1], 0, [], ""
    for ch in inner:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return (*parts, cur)
