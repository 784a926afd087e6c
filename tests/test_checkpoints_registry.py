"""Registry resolution: local weights/, a fake Hugging Face cache, offline errors, sha256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from dgn_cli import checkpoints
from dgn_cli.checkpoints import (
    DEFAULT_DEPTH,
    DEFAULT_DGN,
    add_manifest_entry,
    resolve_checkpoint,
)
from dgn_cli.errors import CheckpointError
from dgn_cli.registry import get_entry, load_manifest, weights_dir

REVISION = "0123456789abcdef0123456789abcdef01234567"


def _manifest(tmp_path: Path, **overrides) -> Path:
    entry = {
        "name": "toy-depth",
        "kind": "depth",
        "architecture": "DepthAnythingV2Small",
        "source": {"repo_id": "someone/toy", "filename": "toy.pth", "revision": REVISION},
        "sha256": None,
        "licence": "MIT",
        "status": "public",
    }
    entry.update(overrides)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"format": 1, "entries": [entry]}))
    return path


def test_shipped_manifest_has_every_required_entry():
    entries = load_manifest()
    for name in [
        "depth-anything-v2-small",
        "megadepth",
        "vgg19",
        "dgn-image",
        "dgn-video",
        "dgn-baseline",
        "dgn-concat",
        "dgn-depth-small",
    ]:
        assert name in entries
    da = entries["depth-anything-v2-small"]
    assert da.source.repo_id == "depth-anything/Depth-Anything-V2-Small"
    assert da.source.filename == "depth_anything_v2_vits.pth"
    assert da.licence == "Apache-2.0" and len(da.source.revision) == 40
    assert entries["megadepth"].source.filename is None  # not on the Hub: given by path
    for name in ["dgn-image", "dgn-video", "dgn-baseline", "dgn-concat", "dgn-depth-small"]:
        entry = entries[name]
        file_present = (weights_dir() / entry.source.file).is_file()
        assert entry.status == ("trained" if file_present else "untrained"), name
    assert set(DEFAULT_DGN.values()) | {DEFAULT_DEPTH} <= set(entries)


def test_an_existing_path_resolves_to_itself(tmp_path):
    f = tmp_path / "model.pth"
    f.write_bytes(b"x")
    assert resolve_checkpoint(str(f)) == f


def test_a_missing_path_says_so(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        resolve_checkpoint(str(tmp_path / "nope.pth"))


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(CheckpointError, match="unknown checkpoint 'nope'.*depth-anything-v2-small"):
        resolve_checkpoint("nope")


def test_a_name_of_another_kind_is_refused(hf_cache):
    with pytest.raises(CheckpointError, match="is a vgg checkpoint, not depth"):
        resolve_checkpoint("vgg19", kind="depth")


def test_resolves_through_the_hub_cache_and_checks_the_lfs_sha(tmp_path, hub_file):
    data = b"toy weights"
    link = hub_file("someone/toy", "toy.pth", REVISION, data)
    assert resolve_checkpoint("toy-depth", manifest=_manifest(tmp_path)) == link


def test_a_pinned_sha256_is_checked_for_cached_files(tmp_path, hub_file):
    data = b"toy weights"
    link = hub_file("someone/toy", "toy.pth", REVISION, data)
    pinned = _manifest(tmp_path, sha256=hashlib.sha256(data).hexdigest())
    assert resolve_checkpoint("toy-depth", manifest=pinned) == link
    wrong = _manifest(tmp_path, sha256="0" * 64)
    with pytest.raises(CheckpointError, match="sha256 .* does not match 0{64}"):
        resolve_checkpoint("toy-depth", manifest=wrong)


def test_a_cached_file_whose_content_differs_from_its_hub_digest_is_refused(tmp_path, hub_file):
    hub_file("someone/toy", "toy.pth", REVISION, b"tampered", blob_name="a" * 64)
    with pytest.raises(CheckpointError, match="does not match a{64}.*dgn weights fetch toy-depth"):
        resolve_checkpoint("toy-depth", manifest=_manifest(tmp_path))


def test_the_real_entry_refuses_a_cached_file_that_is_not_the_published_one(hub_file):
    entry = get_entry("depth-anything-v2-small")
    hub_file(
        entry.source.repo_id,
        entry.source.filename,
        entry.source.revision,
        b"not the real checkpoint",
    )
    with pytest.raises(CheckpointError, match="does not match 715fade1"):
        resolve_checkpoint("depth-anything-v2-small")


def test_offline_and_missing_gives_one_clear_line(hf_cache):
    with pytest.raises(CheckpointError) as info:
        resolve_checkpoint("depth-anything-v2-small", kind="depth")
    message = str(info.value)
    assert "\n" not in message
    assert "'depth-anything-v2-small'" in message
    assert str(hf_cache) in message and "HF_HUB_OFFLINE" in message
    assert (
        "dgn weights fetch depth-anything-v2-small" in message and "--depth-model PATH" in message
    )


def test_offline_never_imports_a_download(hf_cache, monkeypatch):
    def boom(entry):
        raise AssertionError("must not download when HF_HUB_OFFLINE=1")

    monkeypatch.setattr(checkpoints, "_download", boom)
    with pytest.raises(CheckpointError):
        resolve_checkpoint("vgg19")


def test_online_downloads_at_the_pinned_revision_and_verifies(tmp_path, hub_file, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    calls = []

    def fake_download(entry):
        calls.append(entry.source.revision)
        return hub_file("someone/toy", "toy.pth", REVISION, b"downloaded")

    monkeypatch.setattr(checkpoints, "_download", fake_download)
    path = resolve_checkpoint("toy-depth", manifest=_manifest(tmp_path))
    assert calls == [REVISION] and path.read_bytes() == b"downloaded"


def test_untrained_and_manual_entries_say_how_to_get_them(hf_cache, untrained_weights):
    with pytest.raises(
        CheckpointError, match="not trained yet.*dgn train --export dgn-image.*--weights PATH"
    ):
        resolve_checkpoint("dgn-image")
    with pytest.raises(
        CheckpointError, match="not on the Hugging Face Hub.*cornell.*--depth-model PATH"
    ):
        resolve_checkpoint("megadepth")


def test_a_file_in_dgn_weights_dir_is_found_first(tmp_path, hf_cache, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "best_generalization_net_G.pth").write_bytes(b"x")
    monkeypatch.setenv("DGN_WEIGHTS_DIR", str(folder))
    assert resolve_checkpoint("megadepth") == folder / "best_generalization_net_G.pth"


def test_add_manifest_entry_adds_and_replaces_atomically(tmp_path):
    path = _manifest(tmp_path)
    entry = {
        "name": "dgn-mine",
        "kind": "dgn",
        "architecture": "DGN",
        "source": {"file": "dgn-mine.safetensors"},
        "sha256": "ab" * 32,
        "status": "trained",
        "training": {"steps": 10, "wall_time_s": 1.5, "metrics": {"psnr": 20.0}},
    }
    add_manifest_entry(entry, path)
    add_manifest_entry({**entry, "sha256": "cd" * 32}, path)
    entries = load_manifest(path)
    assert list(entries) == ["toy-depth", "dgn-mine"]
    assert entries["dgn-mine"].sha256 == "cd" * 32
    assert entries["dgn-mine"].training["metrics"]["psnr"] == 20.0
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    with pytest.raises(CheckpointError, match="lacks"):
        add_manifest_entry({"name": "broken"}, path)
    assert list(load_manifest(path)) == ["toy-depth", "dgn-mine"]


def test_a_pinned_file_cached_at_main_by_another_tool_is_used(tmp_path, hub_file):
    data = b"toy weights"
    other_revision = "f" * 40  # `main` as another tool fetched it (refs/main points here)
    link = hub_file("someone/toy", "toy.pth", other_revision, data)
    pinned = _manifest(tmp_path, sha256=hashlib.sha256(data).hexdigest())
    assert resolve_checkpoint("toy-depth", manifest=pinned) == link
    moved_on = _manifest(tmp_path, sha256="0" * 64)  # main now holds other content: not ours
    with pytest.raises(CheckpointError, match="not found: looked in"):
        resolve_checkpoint("toy-depth", manifest=moved_on)
