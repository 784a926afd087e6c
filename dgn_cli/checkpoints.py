"""Checkpoints: resolution (path -> weights/ -> Hugging Face cache -> Hub), verification, loading.

A checkpoint is named either by a file path or by a registry name from `weights/manifest.json`
(see dgn_cli/registry.py). Resolution of a name, in order:

1. a file in $DGN_WEIGHTS_DIR or the shipped `weights/` (package data `dgn_cli._weights`);
2. the Hugging Face cache (`try_to_load_from_cache` at the pinned revision);
3. `hf_hub_download` at the pinned revision, unless HF_HUB_OFFLINE is set.

Files that come through the registry are checked against the manifest's sha256. Where the
manifest has none (it is not known offline), a file from the Hub cache is checked against the
Hub's own LFS sha256, which names the cached blob (the file's etag); `dgn weights fetch` prints
the digest so that it can be pinned. `huggingface_hub` is imported only when the cache or the
Hub is consulted.

Loading: safetensors first; `.pth` only through `torch.load(weights_only=True)`; `module.` and
`_orig_mod.` prefixes stripped, `{"params": ...}` / `{"state_dict": ...}` unwrapped; strict
loads whose errors list the first missing and unexpected keys.

Our own checkpoints are safetensors with the model config as JSON in the metadata.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from torch import nn

from dgn_cli.errors import CheckpointError
from dgn_cli.models.depth import DepthEstimator, SmallDepthConfig, SmallDepthNet
from dgn_cli.models.depth.estimator import DEPTH_ARCHITECTURES, detect_architecture
from dgn_cli.models.dgn import DGN, DGNConfig
from dgn_cli.registry import Entry, add_manifest_entry, get_entry, load_manifest, local_dirs
from dgn_cli.safetensors_file import write_safetensors

__all__ = [
    "CONFIG_KEY",
    "DEFAULT_DEPTH",
    "DEFAULT_DGN",
    "DEPTH_CONFIG_KEY",
    "add_manifest_entry",
    "checkpoint_state",
    "expected_sha256",
    "fetch_checkpoint",
    "hub_cache_dir",
    "load_depth_estimator",
    "load_dgn",
    "load_state_dict_file",
    "load_state_dict_strict",
    "read_metadata",
    "resolve_checkpoint",
    "save_depth_net",
    "save_dgn",
    "sha256_file",
    "verify_file",
]

CONFIG_KEY = "dgn_config"
DEPTH_CONFIG_KEY = "depth_config"
DEFAULT_DGN = {"image": "dgn-image", "video": "dgn-video"}
DEFAULT_DEPTH = "dgn-depth-small"

# Where a user passes a file instead of a registry name, per checkpoint kind.
_PATH_OPTION = {"depth": "--depth-model PATH", "dgn": "--weights PATH", "vgg": "--vgg-weights PATH"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_WRAPPER_KEYS = ("state_dict", "params_ema", "params", "model")
_PREFIXES = ("module.", "_orig_mod.")


# --- hashing -----------------------------------------------------------------------------------

_verified: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, per process


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file (memoised per process by path, size and mtime)."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
        _verified[key] = h.hexdigest()
    return _verified[key]


def expected_sha256(entry: Entry | None, path: Path) -> str | None:
    """The digest a file should have: the manifest's, else the Hub blob name (LFS sha256)."""
    if entry is not None and entry.sha256:
        return entry.sha256
    blob = Path(path).resolve().name
    return blob if _SHA256.match(blob) else None


def verify_file(path: str | os.PathLike, entry: Entry | None = None) -> str:
    """Check `path` against `expected_sha256`; return its digest. Mismatch -> CheckpointError."""
    path = Path(path)
    digest = sha256_file(path)
    expected = expected_sha256(entry, path)
    if expected is not None and digest != expected:
        name = entry.name if entry is not None else path.name
        raise CheckpointError(
            f"{path}: sha256 {digest} does not match {expected} expected for {name!r}; the file "
            f"is corrupt or not the published one: delete it and run `dgn weights fetch {name}`"
        )
    return digest


def verify_given_file(path: Path) -> str | None:
    """A checkpoint given by path is checked where something names its digest: a
    `<file>.sha256` beside it (sha256sum format), or a manifest.json beside it with an entry
    for this file name. Returns the digest checked against, or None if nothing names one."""
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.is_file():
        try:
            expected = (sidecar.read_text(errors="replace").split() or [""])[0].lower()
        except OSError as e:
            raise CheckpointError(f"{sidecar}: cannot read ({e.strerror})") from None
        if not _SHA256.match(expected):
            raise CheckpointError(f"{sidecar}: does not hold a sha256 (64 hex digits)")
        digest = sha256_file(path)
        if digest != expected:
            raise CheckpointError(
                f"{path}: sha256 {digest} does not match {expected} in {sidecar.name}; the "
                "file is corrupt or not the one that was published"
            )
        return digest
    manifest = path.parent / "manifest.json"
    if manifest.is_file():
        try:
            entries = load_manifest(manifest).values()
        except Exception:  # a foreign manifest.json: not ours to judge
            return None
        for entry in entries:
            if entry.source.local_name == path.name and entry.sha256:
                verify_file(path, entry)
                return entry.sha256
    return None


# --- resolution --------------------------------------------------------------------------------


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time (tests point
    HF_HUB_CACHE at a temp dir after huggingface_hub may already have been imported)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "huggingface" / "hub"


def _looks_like_path(text: str) -> bool:
    return (
        os.sep in text
        or "/" in text
        or Path(text).suffix in (".pth", ".pt", ".safetensors", ".bin", ".ckpt")
    )


def _find_local(entry: Entry) -> Path | None:
    name = entry.source.local_name
    if not name:
        return None
    for folder in local_dirs():
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def _find_cached(entry: Entry) -> Path | None:
    if not entry.source.on_hub:
        return None
    from huggingface_hub import try_to_load_from_cache

    revisions = [entry.source.revision]
    if entry.sha256 and entry.source.revision != "main":
        # Another tool may have fetched the same file at `main`; the pinned digest still
        # guarantees it is the same content, so accept it.
        revisions.append("main")
    for revision in revisions:
        found = try_to_load_from_cache(
            entry.source.repo_id,
            entry.source.filename,
            cache_dir=str(hub_cache_dir()),
            revision=revision,
        )
        if isinstance(found, str) and Path(found).is_file():
            if revision != entry.source.revision and sha256_file(found) != entry.sha256:
                continue  # `main` moved on: not our file, fetch the pinned one instead
            return Path(found)
    return None


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hub cannot be reached from here (no DNS, no route), or None. Checked once before
    a download, so a machine without network fails at once instead of after ~25 s of the
    client's retries."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"{host} cannot be reached ({e.strerror or type(e).__name__})"


def _download(entry: Entry) -> Path:
    from huggingface_hub import hf_hub_download

    unreachable = _hub_unreachable()
    if unreachable:
        raise CheckpointError(
            f"checkpoint {entry.name!r} ({entry.source.repo_id}/{entry.source.filename}) is not "
            f"on this machine and {unreachable}: {_how_to_get(entry)}"
        )
    try:
        return Path(
            hf_hub_download(
                entry.source.repo_id,
                entry.source.filename,
                revision=entry.source.revision,
                cache_dir=str(hub_cache_dir()),
            )
        )
    except Exception as e:  # network, auth, missing revision: all end as one clear line
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        raise CheckpointError(
            f"could not download checkpoint {entry.name!r} from the Hugging Face Hub "
            f"({entry.source.repo_id}/{entry.source.filename} @ {entry.source.revision}): "
            f"{type(e).__name__}: {reason}; {_how_to_get(entry)}"
        ) from None


def _how_to_get(entry: Entry) -> str:
    option = _PATH_OPTION.get(entry.kind, "its file path")
    if entry.status == "untrained":
        return (
            f"train it with `dgn train --export {entry.name}`, "
            f"or pass a checkpoint file with {option}"
        )
    if not entry.source.on_hub:
        origin = f" from {entry.source.url}" if entry.source.url else ""
        return (
            f"download {entry.source.local_name}{origin} and pass it with {option} "
            f"(or put it in weights/ or $DGN_WEIGHTS_DIR)"
        )
    return (
        f"run `dgn weights fetch {entry.name}` on a machine with network (it fills the "
        f"Hugging Face cache, which can be copied here), or there run `hf download "
        f"{entry.source.repo_id} {entry.source.filename} --revision {entry.source.revision} "
        f"--local-dir DIR`, copy DIR here and run `dgn weights fetch {entry.name} --local-dir "
        f"DIR`, or pass the file with {option}"
    )


def import_checkpoint(
    name: str, folder: str | os.PathLike, manifest: str | os.PathLike | None = None
) -> tuple[Path, str]:
    """`dgn weights fetch NAME --local-dir DIR`: take a registry checkpoint from a folder filled
    elsewhere (`hf download ... --local-dir DIR`, or a plain copy), verify its sha256 and store
    it where names are resolved offline (the Hugging Face cache at its pinned revision, else
    the first weights folder). Returns (stored path, sha256)."""
    entry = get_entry(name, manifest)
    filename = entry.source.filename or entry.source.local_name
    folder = Path(folder).expanduser()
    candidates = [folder] if folder.is_file() else [folder / filename, folder / Path(filename).name]
    src = next((c for c in candidates if c.is_file()), None)
    if src is None:
        raise CheckpointError(f"{candidates[0]}: no such file; {_how_to_get(entry)}")
    digest = verify_file(src, entry if entry.sha256 else None)
    revision = entry.source.revision or ""
    if entry.source.on_hub and re.fullmatch(r"[0-9a-f]{40}", revision):
        repo = "models--" + entry.source.repo_id.replace("/", "--")
        dst = hub_cache_dir() / repo / "snapshots" / revision / filename
    else:
        dst = local_dirs()[0] / (entry.source.local_name or Path(filename).name)
    if dst.resolve() != src.resolve():
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".part")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    return dst, digest


def resolve_checkpoint(
    name_or_path: str | os.PathLike,
    kind: str | None = None,
    *,
    manifest: str | os.PathLike | None = None,
    download: bool = True,
) -> Path:
    """A checkpoint's local file: an existing path as is, else a registry name resolved through
    weights/ -> Hugging Face cache -> Hub download (pinned revision; not when HF_HUB_OFFLINE=1
    or `download` is False). `kind` ("depth" | "dgn" | "vgg") rejects a name of another kind.
    Registry files are sha256-verified. Failure -> CheckpointError, one line saying which
    checkpoint, where it looked and how to get it."""
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        verify_given_file(path)
        return path
    if text not in load_manifest(manifest) and _looks_like_path(text):
        raise CheckpointError(f"{text}: no such checkpoint file")
    entry = get_entry(text, manifest)  # an unknown name raises, listing the known ones
    if kind is not None and entry.kind != kind:
        raise CheckpointError(f"checkpoint {entry.name!r} is a {entry.kind} checkpoint, not {kind}")

    found = _find_local(entry)
    if found is not None:
        verify_file(found, entry if entry.sha256 else None)
        return found
    looked = " and ".join(str(d) for d in local_dirs())
    if entry.status == "untrained":
        raise CheckpointError(
            f"checkpoint {entry.name!r} is not trained yet (no {entry.source.local_name} in "
            f"{looked}): {_how_to_get(entry)}"
        )
    if not entry.source.on_hub:
        raise CheckpointError(
            f"checkpoint {entry.name!r} ({entry.source.local_name}) not found in {looked}, and "
            f"it is not on the Hugging Face Hub: {_how_to_get(entry)}"
        )
    cached = _find_cached(entry)
    if cached is not None:
        verify_file(cached, entry)
        return cached
    if download and not _offline():
        fetched = _download(entry)
        verify_file(fetched, entry)
        return fetched
    why = "HF_HUB_OFFLINE=1 is set, so" if _offline() else "downloads are off, so"
    raise CheckpointError(
        f"checkpoint {entry.name!r} ({entry.source.filename}) not found: looked in {looked} "
        f"and the Hugging Face cache ({hub_cache_dir()}); {why} it was not downloaded: "
        f"{_how_to_get(entry)}"
    )


def fetch_checkpoint(name: str, manifest: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Make a registry checkpoint available offline (download into the HF cache if needed);
    returns (path, sha256) after verification."""
    path = resolve_checkpoint(name, manifest=manifest)
    return path, verify_file(path, get_entry(name, manifest))


def checkpoint_state(entry: Entry) -> tuple[str, Path | None]:
    """(state, path) without downloading or hashing: "local" (in weights/ or
    $DGN_WEIGHTS_DIR), "cached" (in the HF cache), or "missing"."""
    found = _find_local(entry)
    if found is not None:
        return "local", found
    if entry.source.on_hub:
        cached = _find_cached(entry)
        if cached is not None:
            return "cached", cached
    return "missing", None


# --- state dicts -------------------------------------------------------------------------------


def _clean(state: Mapping[str, Any], source: str) -> dict[str, torch.Tensor]:
    for key in _WRAPPER_KEYS:  # training checkpoints wrap the weights
        if isinstance(state.get(key), Mapping):
            state = state[key]
            break
    out = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        out[key] = value
    if not out:
        raise CheckpointError(f"{source}: holds no tensors; not a model checkpoint")
    return out


def load_state_dict_file(path: str | os.PathLike, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, cleaned: safetensors, or a `.pth` read with
    torch.load(weights_only=True) (never arbitrary pickles). Prefixes `module.` / `_orig_mod.`
    stripped; `{"params": ...}`, `{"state_dict": ...}` (and params_ema / model) unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    try:
        state = load_file(str(path), device=device)
    except (SafetensorError, OSError) as e:
        if path.suffix == ".safetensors":
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except Exception as e:  # unpickling refused, truncated file, not a checkpoint
            reason = " ".join(str(e).split())[:200] or type(e).__name__
            raise CheckpointError(
                f"{path}: cannot be read as safetensors nor as a plain PyTorch state dict "
                f"(torch.load weights_only=True: {reason})"
            ) from None
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return _clean(state, str(path))


def load_state_dict_strict(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str, first: int = 5
) -> None:
    """Load strictly, converting dtypes; on mismatch raise one CheckpointError listing the first
    missing, unexpected and wrongly shaped keys. A missing `num_batches_tracked` is accepted
    (checkpoints from before PyTorch 0.4 lack it)."""
    reference = model.state_dict()
    missing = [k for k in reference if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in reference]
    shapes = [
        f"{k} {list(state[k].shape)} vs {list(reference[k].shape)}"
        for k in reference
        if k in state and state[k].shape != reference[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {', '.join(missing[:first])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {', '.join(unexpected[:first])})")
        if shapes:
            parts.append(f"{len(shapes)} of another shape (first: {'; '.join(shapes[:first])})")
        raise CheckpointError(
            f"{source}: does not match {type(model).__name__}: {'; '.join(parts)}"
        )
    full = dict(reference)  # keeps num_batches_tracked where the file has none
    full.update({k: v.to(reference[k].dtype) for k, v in state.items()})
    model.load_state_dict(full, strict=True)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e


# --- configs from metadata (untrusted) ---------------------------------------------------------

MAX_PARAMETERS = 500_000_000  # ~2 GB of fp32 weights; the shipped DGNs have ~5 M
MAX_CONFIG_INT = 4096  # widths, channels, blocks, kernel sizes: no real model comes close


def _value_ok(value: Any, default: Any) -> bool:
    """Whether a JSON value has the type of the field's default (ints never bools)."""

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int) or default is None:
        return is_int(value) and 0 <= value <= MAX_CONFIG_INT or (default is None and value is None)
    if isinstance(default, float):
        return (is_int(value) or isinstance(value, float)) and math.isfinite(value)
    if isinstance(default, str):
        return isinstance(value, str) and len(value) <= 100
    if isinstance(default, tuple):
        ok = isinstance(value, list | tuple) and 0 < len(value) <= 16
        return ok and all(is_int(v) and 1 <= v <= MAX_CONFIG_INT for v in value)
    if isinstance(default, dict):
        return isinstance(value, dict)
    return False


def config_from_metadata(cls, text: str, path: str | os.PathLike, key: str, build):
    """A config dataclass from a checkpoint's JSON metadata, validated before anything is built:
    valid JSON, an object, known keys, types and ranges, and at most MAX_PARAMETERS parameters
    (counted on the meta device, so nothing is allocated). Any problem -> CheckpointError
    naming the file."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise CheckpointError(f"{path}: the {key!r} metadata is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{path}: the {key!r} metadata is a JSON {type(data).__name__}, not an object"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise CheckpointError(
            f"{path}: unknown {key!r} field(s) {', '.join(map(repr, unknown))}; the file was "
            "written by another version or altered"
        )
    for name, value in data.items():
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if not _value_ok(value, default):
            raise CheckpointError(
                f"{path}: {key} field {name!r} has the bad value {json.dumps(value)[:80]}"
            )
    try:
        cfg = cls(**data)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad {key!r} ({e})") from None
    try:
        with torch.device("meta"):
            n = sum(p.numel() for p in build(cfg).parameters())
    except Exception as e:  # a config the model's constructor refuses
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise CheckpointError(
            f"{path}: bad {key!r}: the model cannot be built ({reason})"
        ) from None
    if n > MAX_PARAMETERS:
        raise CheckpointError(
            f"{path}: the {key!r} describes a model of {n / 1e6:.0f} M parameters (limit "
            f"{MAX_PARAMETERS / 1e6:.0f} M); refusing to allocate it"
        )
    return cfg


# --- DGN ---------------------------------------------------------------------------------------


def save_dgn(
    model: DGN,
    path: str | os.PathLike,
    metadata: dict[str, str] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write `model`'s weights (optionally cast to `dtype`) and config to a safetensors file."""
    meta = {CONFIG_KEY: model.config.to_json(), "format": "pt", **(metadata or {})}
    tensors = {
        k: (v.to(dtype) if dtype is not None else v).detach().contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    return write_safetensors(tensors, path, meta)


def load_dgn(name_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> DGN:
    """Build a DGN from a safetensors checkpoint's stored config and load its weights (strict).
    Accepts a file path or a registry name (e.g. "dgn-image")."""
    path = resolve_checkpoint(name_or_path, kind="dgn")
    meta = read_metadata(path)
    if CONFIG_KEY not in meta:
        raise CheckpointError(f"{path}: no '{CONFIG_KEY}' in the metadata; not a dgn checkpoint")
    model = DGN(config_from_metadata(DGNConfig, meta[CONFIG_KEY], path, CONFIG_KEY, DGN))
    state = load_file(str(path), device="cpu")
    try:
        load_state_dict_strict(model, state, str(path))
    except CheckpointError as e:
        raise CheckpointError(f"{e} (weights do not match the stored config)") from None
    return model.to(device).eval()


# --- depth -------------------------------------------------------------------------------------


def save_depth_net(
    net: SmallDepthNet, path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> Path:
    """Write a SmallDepthNet's weights with its config (JSON) in the safetensors metadata."""
    meta = {
        DEPTH_CONFIG_KEY: net.config.to_json(),
        "architecture": "SmallDepthNet",
        "format": "pt",
        **{k: str(v) for k, v in (metadata or {}).items()},
    }
    tensors = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    return write_safetensors(tensors, path, meta)


# architecture name (manifest) -> (constructor, DepthEstimator adapter kind)
def load_depth_estimator(
    name_or_path: str | os.PathLike, device: str | torch.device = "cpu"
) -> DepthEstimator:
    """A ready DepthEstimator (RGB [0, 1] -> normalised inverse depth [0, 1], 1 = nearest) from
    a registry name or a file: our SmallDepthNet safetensors (config in the metadata), Depth
    Anything V2 Small (.pth / safetensors) or MegaDepth (.pth, `module.` keys)."""
    text = os.fspath(name_or_path)
    path = resolve_checkpoint(text, kind="depth")
    entry = load_manifest().get(text)
    label = entry.name if entry is not None else path.name

    meta = read_metadata(path) if _is_safetensors(path) else {}
    if DEPTH_CONFIG_KEY in meta:
        depth_cfg = config_from_metadata(
            SmallDepthConfig, meta[DEPTH_CONFIG_KEY], path, DEPTH_CONFIG_KEY, SmallDepthNet
        )
        net: nn.Module = SmallDepthNet(depth_cfg)
        load_state_dict_strict(net, load_file(str(path)), str(path))
        return DepthEstimator(net, kind="small", name=label).to(device).eval()
    if entry is not None and entry.architecture == "SmallDepthNet":
        raise CheckpointError(
            f"{path}: no '{DEPTH_CONFIG_KEY}' in the metadata; not a SmallDepthNet"
        )

    state = load_state_dict_file(path)
    if entry is not None:
        arch = DEPTH_ARCHITECTURES.get(entry.architecture)
    else:
        arch = detect_architecture(state)
    if arch is None or arch.build is None:
        raise CheckpointError(
            f"{path}: not a depth checkpoint this tool knows (expected a dgn SmallDepthNet "
            f"safetensors, Depth Anything V2 Small or MegaDepth weights)"
        )
    net = arch.build()
    load_state_dict_strict(net, state, str(path))
    return DepthEstimator(net, kind=arch.kind, name=label).to(device).eval()


def _is_safetensors(path: Path) -> bool:
    try:
        with safe_open(str(path), framework="pt"):
            return True
    except (SafetensorError, OSError):
        return False
