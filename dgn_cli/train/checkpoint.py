"""Training checkpoints that a resume can trust: a checksum inside, the previous one kept.

    write(path, payload)          # payload + its sha256, durably; the old file kept as .prev
    payload = read(path, FORMAT)  # CheckpointError naming the file on any mismatch

The payload (weights, optimiser state, RNG states, step, recipe) is saved with `torch.save`
and read back with `torch.load(weights_only=True)`, so no arbitrary object is ever unpickled.
`sha256` in the payload is a digest of everything else in it (names, dtypes, shapes and bytes
of every tensor, every number and string), so a flipped byte in the weights or the optimiser
state is refused instead of resumed silently. Before a new checkpoint replaces `path`, the
current one is kept as `<stem>.prev<suffix>` (rotate two): a crash or a full disk while saving
leaves the last good checkpoint, and a corrupt latest one still has a good predecessor.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from dgn_cli.errors import CheckpointError
from dgn_cli.fsutil import atomic_path, replace_durably

DIGEST_KEY = "sha256"


def previous_path(path: Path) -> Path:
    """Where the checkpoint before `path`'s current one is kept."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def payload_digest(payload: dict[str, Any]) -> str:
    """sha256 over a nested payload (dicts, lists, tensors, numbers, strings), `sha256` left out."""
    h = hashlib.sha256()

    def feed(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(obj, dict):
            keys = [k for k in obj if not (obj is payload and k == DIGEST_KEY)]
            h.update(f"D{len(keys)}|".encode())
            for key in sorted(keys, key=lambda k: (type(k).__name__, str(k))):
                h.update(f"K{type(key).__name__}:{key}|".encode())
                feed(obj[key])
        elif isinstance(obj, list | tuple):
            h.update(f"L{len(obj)}|".encode())
            for item in obj:
                feed(item)
        else:  # int, float, str, bool, None
            h.update(f"V{type(obj).__name__}:{obj!r}|".encode())

    feed(payload)
    return h.hexdigest()


def write(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` with its digest to `path` atomically and durably; the checkpoint that was
    there is kept as `previous_path(path)` (hard link, so `path` exists at every moment)."""
    path = Path(path)
    payload = {**payload, DIGEST_KEY: payload_digest(payload)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
        if path.exists():
            _keep_previous(path)


def _keep_previous(path: Path) -> None:
    prev = previous_path(path)
    tmp = prev.with_name(f".{prev.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(path, tmp)
    except OSError:  # a file system without hard links
        shutil.copyfile(path, tmp)
    replace_durably(tmp, prev)


def read(path: Path, fmt: str) -> dict[str, Any]:
    """Load and verify a checkpoint written by `write`; CheckpointError (one line naming the
    file, and the previous checkpoint when that one is good) if it is missing, unreadable, of
    another format or fails its checksum."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from; drop --resume{_hint(path)}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint{_hint(path)}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign files surface in many exception types
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise CheckpointError(
            f"{path}: not a readable training checkpoint ({reason}){_hint(path)}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise CheckpointError(f"{path}: not a `dgn train` checkpoint")
    stored = payload.get(DIGEST_KEY)
    if stored is not None and stored != payload_digest(payload):
        raise CheckpointError(
            f"{path}: the checkpoint is corrupt (its contents do not match the sha256 stored "
            f"in it){_hint(path)}"
        )
    return payload


def _hint(path: Path) -> str:
    """'; the previous checkpoint X (step N) is good: ...' when there is a good one."""
    prev = previous_path(path)
    if prev == path or not prev.is_file():
        return ""
    step = _good_step(prev)
    if step is None:
        return ""
    return (
        f"; the previous checkpoint {prev} (step {step}) is good: copy it to {path.name} "
        "and resume from there"
    )


def _good_step(prev: Path) -> int | None:
    try:
        payload = torch.load(prev, map_location="cpu", weights_only=True)
    except Exception:
        return None
    if not isinstance(payload, dict) or payload.get(DIGEST_KEY) != payload_digest(payload):
        return None
    return int(payload.get("step", 0))
