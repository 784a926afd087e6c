"""`dgn weights list | fetch | verify` through the CLI, offline."""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from dgn_cli.cli import app
from dgn_cli.registry import get_entry, load_manifest

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("hf_cache")  # an empty Hugging Face cache, offline


def _cache_file(hub_file, name: str, data: bytes):
    """`data` in the cache as the pinned download of entry `name` would lie there."""
    source = get_entry(name).source
    return hub_file(source.repo_id, source.filename, source.revision, data, ref=None)


def test_list_shows_every_entry_with_its_status():
    result = runner.invoke(app, ["weights", "list"])
    assert result.exit_code == 0
    for name in load_manifest():
        assert name in result.output
    assert "untrained" in result.output and "not downloaded" in result.output


def test_list_json():
    result = runner.invoke(app, ["weights", "list", "--json"])
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) == set(load_manifest())
    assert rows["depth-anything-v2-small"]["status"] == "not downloaded"
    assert rows["megadepth"]["status"] == "manual download"
    assert rows["dgn-image"]["status"] in ("untrained", "present")


def test_fetch_offline_prints_one_clear_line_and_exits_1():
    result = runner.invoke(app, ["weights", "fetch", "depth-anything-v2-small"])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: checkpoint 'depth-anything-v2-small'")
    assert "HF_HUB_OFFLINE" in lines[0] and "dgn weights fetch depth-anything-v2-small" in lines[0]
    assert "Traceback" not in result.output


def test_fetch_goes_on_past_a_failure_and_reports_each(tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "best_generalization_net_G.pth").write_bytes(b"megadepth")
    monkeypatch.setenv("DGN_WEIGHTS_DIR", str(folder))
    result = runner.invoke(app, ["weights", "fetch", "nope", "megadepth", "--json"])
    assert result.exit_code == 1
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert not rows["nope"]["ok"] and "unknown checkpoint" in rows["nope"]["error"]
    assert rows["megadepth"]["ok"]
    assert rows["megadepth"]["sha256"] == hashlib.sha256(b"megadepth").hexdigest()


def test_fetch_refuses_a_cached_file_with_the_wrong_sha256(hub_file):
    _cache_file(hub_file, "depth-anything-v2-small", b"corrupt download")
    result = runner.invoke(app, ["weights", "fetch", "depth-anything-v2-small"])
    assert result.exit_code == 1
    assert "does not match 715fade1" in result.stderr


def test_verify_reports_mismatches_and_missing_names(hub_file):
    _cache_file(hub_file, "vgg19", b"not vgg")
    result = runner.invoke(app, ["weights", "verify", "--json"])
    assert result.exit_code == 1
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["vgg19"]["result"] == "sha256 mismatch"
    assert rows["depth-anything-v2-small"]["result"] == "not present"
    named = runner.invoke(app, ["weights", "verify", "megadepth"])
    assert named.exit_code == 1 and "not present" in named.stdout
