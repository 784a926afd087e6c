"""The command line shell: help, version, python -m."""

import subprocess
import sys

from typer.testing import CliRunner

from dgn_cli import __version__
from dgn_cli.cli import app

runner = CliRunner()


def test_help_lists_the_five_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ["deblur-image", "deblur-video", "depth", "train", "benchmark"]:
        assert command in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_python_dash_m_runs_the_same_app():
    proc = subprocess.run(
        [sys.executable, "-m", "dgn_cli", "--version"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and __version__ in proc.stdout


def test_error_lines_keep_square_brackets_in_file_names(capsys):
    from dgn_cli.commands.common import err_console, fail

    with err_console.capture() as captured:
        exit_ = fail("clip [1080p].mp4: not a video")
    assert exit_.exit_code == 1
    assert "clip [1080p].mp4: not a video" in captured.get()
