"""The checkpoint registry: `weights/manifest.json`, one entry per known checkpoint.

The manifest ships inside the package (`weights/` is installed as `dgn_cli._weights`), so a
non-editable `pip install .` finds it through importlib.resources. Each entry says what a
checkpoint is (kind, architecture, config, input/output convention, licence) and where it
comes from (a file in `weights/` and/or a Hub repo_id + filename + pinned revision), with its
sha256 where it is known. `status` is the entry's declared state:

- "public": downloadable from the Hugging Face Hub (`dgn weights fetch NAME`);
- "manual": published elsewhere, must be given as a file path (e.g. MegaDepth);
- "untrained": one of the project's own networks whose weights do not exist yet;
- "trained": one of the project's own networks, file in `weights/`.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dgn_cli.errors import CheckpointError, InputError
from dgn_cli.fsutil import write_text_atomic

MANIFEST_NAME = "manifest.json"
KINDS = ("depth", "dgn", "vgg")
STATUSES = ("public", "manual", "untrained", "trained")
# An extra folder searched before the shipped weights/, for files users place themselves.
WEIGHTS_DIR_ENV = "DGN_WEIGHTS_DIR"


@dataclass(frozen=True)
class Source:
    """Where a checkpoint's file comes from. `file` is its name in `weights/`; `repo_id`,
    `filename`, `revision` locate it on the Hub; `url` documents a non-Hub origin."""

    file: str | None = None
    repo_id: str | None = None
    filename: str | None = None
    revision: str | None = None
    url: str | None = None

    @property
    def on_hub(self) -> bool:
        return bool(self.repo_id and self.filename)

    @property
    def local_name(self) -> str | None:
        return self.file or self.filename


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    architecture: str
    source: Source
    config: dict[str, Any] = field(default_factory=dict)
    sha256: str | None = None
    size: int | None = None
    licence: str = ""
    input: str = ""
    output: str = ""
    status: str = "public"
    notes: str = ""
    training: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "manifest") -> Entry:
        missing = [k for k in ("name", "kind", "architecture", "source") if k not in data]
        if missing:
            raise CheckpointError(f"{where}: entry {data.get('name', '?')!r} lacks {missing}")
        if data["kind"] not in KINDS:
            raise CheckpointError(
                f"{where}: entry {data['name']!r} has kind {data['kind']!r}; one of {KINDS}"
            )
        if data.get("status", "public") not in STATUSES:
            raise CheckpointError(
                f"{where}: entry {data['name']!r} has status {data['status']!r}; one of {STATUSES}"
            )
        known = set(cls.__dataclass_fields__)
        fields = {k: v for k, v in data.items() if k in known}
        fields["source"] = Source(
            **{k: v for k, v in data["source"].items() if k in Source.__dataclass_fields__}
        )
        if fields.get("sha256"):
            fields["sha256"] = str(fields["sha256"]).lower()
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["source"] = {k: v for k, v in data["source"].items() if v is not None}
        if data["training"] is None:
            del data["training"]
        return data


def weights_dir() -> Path:
    """The shipped `weights/` folder (package data `dgn_cli._weights`)."""
    return Path(str(importlib.resources.files("dgn_cli._weights")))


def local_dirs() -> list[Path]:
    """Folders searched for checkpoint files, in order: $DGN_WEIGHTS_DIR, then `weights/`."""
    dirs = []
    if os.environ.get(WEIGHTS_DIR_ENV):
        dirs.append(Path(os.environ[WEIGHTS_DIR_ENV]).expanduser())
    dirs.append(weights_dir())
    return dirs


NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def check_name(name: str, option: str = "--export") -> str:
    """A registry name is `[a-z0-9][a-z0-9._-]*` (at most 100 characters): never a path, so
    `--export ../../x` cannot write outside the weights folder. InputError otherwise."""
    if not NAME_PATTERN.match(name) or len(name) > 100 or ".." in name:
        raise InputError(
            f"{option} {name!r}: a registry name is lower-case letters, digits, '.', '_' and "
            "'-' (starting with a letter or digit, no '..'), e.g. dgn-image-mine"
        )
    return name


def check_manifest(path: str | os.PathLike) -> None:
    """Read a manifest now (CheckpointError if it is unreadable), e.g. before hours of
    training that end by adding an entry to it."""
    _read(Path(path))


def manifest_path() -> Path:
    return weights_dir() / MANIFEST_NAME


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"format": 1, "entries": []}
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint manifest ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise CheckpointError(f"{path}: a manifest is {{'format': 1, 'entries': [...]}}")
    return data


def load_manifest(manifest: str | os.PathLike | None = None) -> dict[str, Entry]:
    """name -> Entry, in manifest order."""
    path = Path(manifest) if manifest is not None else manifest_path()
    return {e["name"]: Entry.from_dict(e, str(path)) for e in _read(path)["entries"]}


def get_entry(name: str, manifest: str | os.PathLike | None = None) -> Entry:
    entries = load_manifest(manifest)
    if name not in entries:
        raise CheckpointError(
            f"unknown checkpoint {name!r}: neither an existing file nor a registry name "
            f"(known: {', '.join(entries)}; see `dgn weights list`)"
        )
    return entries[name]


def add_manifest_entry(entry: dict[str, Any], manifest: str | os.PathLike | None = None) -> None:
    """Add or replace (by name) one entry, e.g. from `dgn train --export NAME`.

    `entry` needs at least name, kind, architecture and source; it is validated, then the
    manifest is rewritten atomically (temp file + rename), other entries kept in order.
    """
    path = Path(manifest) if manifest is not None else manifest_path()
    check_name(str(entry.get("name", "")), "entry name")
    Entry.from_dict(entry, str(path))  # validate before touching the file
    data = _read(path)
    entries = data["entries"]
    for i, old in enumerate(entries):
        if old.get("name") == entry["name"]:
            entries[i] = entry
            break
    else:
        entries.append(entry)
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
