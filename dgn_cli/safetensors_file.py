"""Writing safetensors files whose bytes depend only on their contents.

safetensors 0.8 serialises the `__metadata__` map in the random iteration order of a Rust
HashMap (safetensors issue #584), so saving the same tensors and metadata twice gives two files
with different sha256. Our checkpoints carry their config in the metadata and are pinned by
sha256 in weights/manifest.json, so a re-export or a rerun of `scripts/campaign/soup.py` must
reproduce the published digest. `write_safetensors` saves through the library, then rewrites the
header with the metadata keys sorted: the tensor entries, their offsets and the data bytes are
the library's own, and the result reads back with `safe_open` like any other file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save

from dgn_cli.fsutil import atomic_path

__all__ = ["canonical_bytes", "write_safetensors"]

_LENGTH_BYTES = 8  # the header length, little-endian u64, comes first
_ALIGN = 8  # the header is padded with spaces so that the data starts 8-byte aligned


def canonical_bytes(data: bytes) -> bytes:
    """A safetensors file's bytes with the `__metadata__` keys in sorted order (else unchanged)."""
    n = int.from_bytes(data[:_LENGTH_BYTES], "little")
    header = json.loads(data[_LENGTH_BYTES : _LENGTH_BYTES + n])
    meta = header.pop("__metadata__", None)
    if meta is not None:
        header = {"__metadata__": dict(sorted(meta.items())), **header}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % _ALIGN)
    return len(text).to_bytes(_LENGTH_BYTES, "little") + text + data[_LENGTH_BYTES + n :]


def write_safetensors(
    tensors: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write `tensors` (contiguous, CPU) and string `metadata` to `path` atomically (temp +
    rename), byte-for-byte the same for the same contents."""
    data = canonical_bytes(save(dict(tensors), metadata=dict(metadata) if metadata else None))
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)
