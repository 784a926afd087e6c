"""Results on stdout, progress and diagnostics on stderr: `dgn weights list > f` keeps the
table, tables never break a word, the batch bar has an ETA, tiles show progress, the video bar
starts at the frames --duration will give."""

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from rich.progress import TimeRemainingColumn
from test_cli_image import rgb, run
from typer.testing import CliRunner

from dgn_cli.cli import app
from dgn_cli.commands.progress import BatchProgress
from dgn_cli.video.pipeline import VideoOptions, expected_frames
from dgn_cli.video.probe import StreamInfo, VideoInfo

REPO = Path(__file__).resolve().parents[1]


def test_weights_list_redirected_to_a_file_keeps_the_table(tmp_path):
    out = tmp_path / "list.txt"
    with open(out, "w") as f:
        proc = subprocess.run(
            [sys.executable, "-m", "dgn_cli", "weights", "list"],
            stdout=f,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "COLUMNS": "60", "PATH": ""},
        )
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text().splitlines()
    assert lines[0].split()[:4] == ["name", "kind", "status", "licence"]
    names = [ln.split()[0] for ln in lines[1:] if ln.strip()]
    assert "dgn-image" in names and "depth-anything-v2-small" in names
    # one line per checkpoint: no cell wrapped onto a second line, no word broken
    assert len(names) == len({*names}) and all(n[0].isalpha() for n in names)
    assert "dgn-image" not in proc.stderr


def test_weights_list_in_the_runner_goes_to_stdout():
    result = CliRunner().invoke(app, ["weights", "list"])
    assert result.exit_code == 0 and "dgn-video" in result.stdout
    assert "dgn-video" not in result.stderr


def test_batch_bar_has_an_eta_and_tiles_report_progress(tmp_path, monkeypatch, tiny_checkpoints):
    bar = BatchProgress(3, quiet=False)
    assert any(isinstance(c, TimeRemainingColumn) for c in bar.progress.columns)
    calls = []
    original = BatchProgress.on_tile
    monkeypatch.setattr(
        BatchProgress,
        "on_tile",
        lambda s, d, t: (calls.append((d, t)), original(s, d, t)),
    )
    cv2.imwrite(str(tmp_path / "big.png"), rgb(h=96, w=96))
    args = tiny_checkpoints.args("identity")
    r = run(
        tmp_path / "big.png",
        "-o",
        tmp_path / "o.png",
        *args,
        "--tile",
        "64",
        "--tile-overlap",
        "16",
    )
    assert r.exit_code == 0, r.output
    total = calls[-1][1]
    assert total > 1 and calls[-1] == (total, total) and (1, total) in calls


def test_video_bar_total_follows_start_and_duration():
    info = VideoInfo(
        path=Path("x.mp4"), container="mov", video=StreamInfo(0, "video", "h264"), width=64,
        height=48, fps=Fraction(25), tbr=Fraction(25), pix_fmt="yuv420p", color_matrix=None,
        color_range=None, duration=10.0, packets=250,
    )  # fmt: skip
    assert expected_frames(info, VideoOptions()) == 250
    assert expected_frames(info, VideoOptions(duration=2)) == 50
    assert expected_frames(info, VideoOptions(start=9, duration=5)) == 25
    assert np.isclose(expected_frames(info, VideoOptions(start=4)), 150)
