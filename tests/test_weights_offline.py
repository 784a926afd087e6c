"""`dgn weights fetch` without network: it fails at once, naming the missing file and how to
bring it onto the machine; `--local-dir` takes a file fetched elsewhere (`hf download`)."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dgn_cli import checkpoints
from dgn_cli.checkpoints import import_checkpoint, resolve_checkpoint
from dgn_cli.cli import app
from dgn_cli.errors import CheckpointError

REVISION = "0123456789abcdef0123456789abcdef01234567"
DATA = b"toy checkpoint bytes"
runner = CliRunner()


@pytest.fixture
def no_network(monkeypatch):
    """No DNS, as on an offline machine; a download attempt would fail the test."""

    def refuse(*a, **k):
        raise socket.gaierror(-2, "Name or service not known")

    def no_download(*a, **k):
        raise AssertionError("hf_hub_download was called without network")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)


def toy_manifest(tmp_path: Path) -> Path:
    entry = {
        "name": "toy-depth",
        "kind": "depth",
        "architecture": "DepthAnythingV2Small",
        "source": {"repo_id": "someone/toy", "filename": "toy.pth", "revision": REVISION},
        "sha256": hashlib.sha256(DATA).hexdigest(),
        "licence": "MIT",
        "status": "public",
    }
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"format": 1, "entries": [entry]}))
    return path


def test_no_network_fails_at_once_naming_the_file_and_the_way(hf_cache, no_network):
    t0 = time.perf_counter()
    result = runner.invoke(app, ["weights", "fetch", "depth-anything-v2-small"])
    assert time.perf_counter() - t0 < 5
    assert result.exit_code == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    line = lines[0]
    assert "depth_anything_v2_vits.pth" in line and "cannot be reached" in line
    assert "hf download depth-anything/Depth-Anything-V2-Small depth_anything_v2_vits.pth" in line
    assert "--local-dir DIR" in line and "--depth-model PATH" in line


def test_hf_hub_offline_says_the_same(hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(app, ["weights", "fetch", "depth-anything-v2-small"])
    assert result.exit_code == 1
    assert "HF_HUB_OFFLINE=1" in result.stderr and "--local-dir" in result.stderr


def test_local_dir_fills_the_cache_and_then_resolves_offline(hf_cache, tmp_path, no_network):
    manifest = toy_manifest(tmp_path)
    with pytest.raises(CheckpointError, match="cannot be reached"):
        resolve_checkpoint("toy-depth", manifest=manifest)
    elsewhere = tmp_path / "from-hf-download"
    elsewhere.mkdir()
    (elsewhere / "toy.pth").write_bytes(DATA)
    stored, digest = import_checkpoint("toy-depth", elsewhere, manifest=manifest)
    assert digest == hashlib.sha256(DATA).hexdigest() and stored.read_bytes() == DATA
    assert resolve_checkpoint("toy-depth", manifest=manifest) == stored  # no network needed
    (elsewhere / "toy.pth").write_bytes(b"something else")
    with pytest.raises(CheckpointError, match="sha256"):
        import_checkpoint("toy-depth", elsewhere, manifest=manifest)
    with pytest.raises(CheckpointError, match="no such file"):
        import_checkpoint("toy-depth", tmp_path / "empty", manifest=manifest)


def test_cli_local_dir_option(hf_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(app, ["weights", "fetch", "vgg19", "--local-dir", str(tmp_path)])
    assert result.exit_code == 1 and "no such file" in result.stderr
    assert checkpoints.hub_cache_dir() == hf_cache
