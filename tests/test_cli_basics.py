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


def test_help_and_version_start_without_torch():
    """`dgn --help` and `dgn --version` import no heavy module (torch took 5 s of start-up)."""
    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        "from dgn_cli.cli import app\n"
        "for args in (['--help'], ['--version']):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('torch', 'cv2', 'numpy', 'imageio_ffmpeg') if m in sys.modules]\n"
        "print('HEAVY', heavy, time.perf_counter() - t)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("HEAVY"))
    assert line.startswith("HEAVY []"), line
    assert "deblur-video" in proc.stdout and __version__ in proc.stdout


def test_each_command_still_has_its_own_help():
    for command in ["deblur-image", "deblur-video", "depth", "train", "benchmark"]:
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output and "--" in result.output
    result = runner.invoke(app, ["weights", "list", "--help"])
    assert result.exit_code == 0 and "--json" in result.output
    assert runner.invoke(app, ["nope"]).exit_code == 2
