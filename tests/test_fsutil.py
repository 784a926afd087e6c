"""Atomic writes: all or nothing, normal permissions."""

import pytest

from dgn_cli.fsutil import atomic_path, write_text_atomic


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temp file left
    write_text_atomic(target, "new")
    assert target.read_text() == "new"


def test_atomic_output_gets_umask_permissions(tmp_path, monkeypatch):
    from dgn_cli import fsutil

    monkeypatch.setattr(fsutil, "_UMASK", 0o022)
    write_text_atomic(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    monkeypatch.setattr(fsutil, "_UMASK", 0o077)
    write_text_atomic(tmp_path / "b.txt", "x")
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o600
