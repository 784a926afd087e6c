"""Output paths of `dgn deblur-image` as users know them from other tools: NAME_sharp.EXT
beside the input without -o (--suffix changes it), several inputs never written into one file,
`-` for stdin/stdout, and the README's first command leaves the repository clean."""

import io
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from test_cli_image import rgb, run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def identity(tiny_checkpoints):
    return tiny_checkpoints.args("identity")


def test_without_o_writes_name_sharp_beside_the_input(tmp_path, identity):
    src = rgb()
    cv2.imwrite(str(tmp_path / "a.png"), src)
    r = run(tmp_path / "a.png", *identity, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["files"][0]["output"] == str(tmp_path / "a_sharp.png")
    assert np.array_equal(cv2.imread(str(tmp_path / "a_sharp.png")), src)
    r = run(tmp_path / "a.png", *identity, "--suffix", "_out", "--format", "jpg")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a_out.jpg").is_file()
    # a folder: each output beside its input; a rerun leaves the outputs out
    (tmp_path / "sub").mkdir()
    cv2.imwrite(str(tmp_path / "sub" / "b.png"), src)
    r = run(tmp_path, *identity, "--json")
    assert r.exit_code == 0, r.output
    outputs = sorted(Path(f["output"]).name for f in json.loads(r.stdout)["files"])
    assert outputs == ["a_out_sharp.jpg", "a_sharp.png", "b_sharp.png"]
    assert (tmp_path / "sub" / "b_sharp.png").is_file()
    again = run(tmp_path, *identity, "--json")
    assert json.loads(again.stdout)["summary"]["ok"] == 0  # all skipped, none re-deblurred
    assert not list(tmp_path.rglob("*_sharp_sharp*"))


def test_several_inputs_into_one_file_is_refused(tmp_path, identity):
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), rgb())
    r = run(tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "onefile.png", *identity)
    assert r.exit_code == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "onefile.png" in lines[0] and "folder" in lines[0]
    assert not (tmp_path / "onefile.png").exists()
    r = run(tmp_path, "-o", tmp_path / "x.jpg", *identity)
    assert r.exit_code == 1 and not (tmp_path / "x.jpg").exists()
    r = run(tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "out", *identity)
    assert r.exit_code == 0 and (tmp_path / "out" / "b.png").is_file()


def test_dash_reads_stdin_and_writes_stdout(tmp_path, identity):
    from typer.testing import CliRunner

    from dgn_cli.cli import app

    src = rgb()
    buf = io.BytesIO()
    Image.fromarray(src).save(buf, format="PNG")
    r = CliRunner().invoke(app, ["deblur-image", "-", "-o", "-", *identity], input=buf.getvalue())
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes.startswith(b"\x89PNG")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.stdout_bytes))), src)
    # a file to stdout, in the format asked for
    Image.fromarray(src).save(tmp_path / "a.png")
    r = CliRunner().invoke(app, ["deblur-image", str(tmp_path / "a.png"), "-o", "-", *identity,
                                 "--format", "jpg"])  # fmt: skip
    assert r.exit_code == 0 and r.stdout_bytes.startswith(b"\xff\xd8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # nothing else written
    # stdin to a file
    r = CliRunner().invoke(app, ["deblur-image", "-", "-o", str(tmp_path / "s.png"), *identity],
                           input=buf.getvalue())  # fmt: skip
    assert r.exit_code == 0 and (tmp_path / "s.png").is_file()
    bad = CliRunner().invoke(app, ["deblur-image", "a", "-o", "-", "--json"])
    assert bad.exit_code != 0


def test_readme_first_command_does_not_dirty_the_repository():
    first = next(ln for ln in (REPO / "README.md").read_text().splitlines() if "dgn deblur" in ln)
    out = re.search(r"-o (\S+)", first).group(1)
    assert Path(out).is_absolute() and not Path(out).resolve().is_relative_to(REPO), first
