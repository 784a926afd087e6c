"""Average the weights of campaign runs that continued the same checkpoint ("model soup").

    python scripts/campaign/soup.py OUT RUN_WEIGHTS RUN_WEIGHTS [...] [--name dgn-video]

Each RUN_WEIGHTS folder is what `dgn train --export NAME --export-dir` wrote (NAME.safetensors
and its manifest.json). Runs fine-tuned from one checkpoint with different seeds stay in one
basin of the loss, so their element-wise mean is a model too, often better than each member
(Wortsman et al., "Model soups", ICML 2022): two side-by-side CPU runs then give one set of
weights instead of a pick of the luckier seed. OUT gets NAME.safetensors (the members' dtype)
and a manifest.json entry that `scripts/gpu/install.py OUT NAME` installs; the entry's training
record lists the members (sha256, steps, seed, wall time, validation metrics).
Refuses members with different architectures or configs, or a file that fails its manifest's
sha256. Ship a soup only when the benchmark says it beats its members and the shipped weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from dgn_cli import checkpoints, registry  # noqa: E402
from dgn_cli.safetensors_file import write_safetensors  # noqa: E402


def _member(folder: Path, name: str) -> tuple[dict, Path, dict[str, torch.Tensor]]:
    """(manifest entry, file, tensors as stored) of one run's export, checked against its
    sha256."""
    entry = registry.load_manifest(folder / registry.MANIFEST_NAME).get(name)
    if entry is None:
        raise SystemExit(f"{folder}: no manifest entry {name!r}")
    path = folder / (entry.source.local_name or f"{name}.safetensors")
    if checkpoints.sha256_file(path) != entry.sha256:
        raise SystemExit(f"{path}: sha256 does not match its manifest entry")
    return entry.to_dict(), path, load_file(path)


def average(members: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean in float32, cast back to each tensor's dtype. Shapes and keys must
    match; non-float tensors (counters) must be equal."""
    first = members[0]
    for other in members[1:]:
        if other.keys() != first.keys():
            odd = sorted(other.keys() ^ first.keys())[:3]
            raise SystemExit(f"members hold different tensors: {odd}")
    soup = {}
    for key, tensor in first.items():
        stack = [m[key] for m in members]
        if any(t.shape != tensor.shape for t in stack):
            raise SystemExit(f"{key}: shapes differ across members")
        if tensor.is_floating_point():
            soup[key] = torch.stack([t.float() for t in stack]).mean(0).to(tensor.dtype)
        elif all(torch.equal(t, tensor) for t in stack):
            soup[key] = tensor.clone()
        else:
            raise SystemExit(f"{key}: a non-float tensor differs across members")
    return soup


def make_soup(out: Path, folders: list[Path], name: str) -> dict:
    """Write OUT/NAME.safetensors and its manifest entry; return the entry."""
    entries, files, tensors = zip(*(_member(f, name) for f in folders), strict=True)
    first = entries[0]
    for folder, entry in zip(folders[1:], entries[1:], strict=True):
        if (entry["kind"], entry["architecture"], entry["config"]) != (
            first["kind"], first["architecture"], first["config"]
        ):  # fmt: skip
            raise SystemExit(f"{folder}: {name} has another architecture or config than "
                             f"{folders[0]}")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.safetensors"
    # each member trained this many steps from the same start (its file and entry say the same)
    steps = max(e["training"].get("steps") or 0 for e in entries)
    # the first member's metadata (architecture config, recipe) describes the soup as well
    meta = checkpoints.read_metadata(files[0])
    meta["soup_of"] = json.dumps([e["sha256"] for e in entries])
    if "steps" in meta:  # the longest member's, as in the manifest entry (not the first's)
        meta["steps"] = str(steps)
    write_safetensors(average(list(tensors)), path, meta)
    training = first["training"]
    recipe = training.get("recipe", {})
    members = []
    for e in entries:
        own = e["training"].get("recipe", {})
        members.append({
            "sha256": e["sha256"],
            "steps": e["training"].get("steps"),
            "wall_time_s": e["training"].get("wall_time_s"),
            "metrics": e["training"].get("metrics", {}),
            # what this member's recipe changed from the first member's (seed, --jpeg, ...)
            "recipe": {k: v for k, v in own.items() if recipe.get(k) != v}
            | {"seed": own.get("seed")},
        })  # fmt: skip
    entry = {
        **first,
        "source": {"file": path.name},
        "sha256": checkpoints.sha256_file(path),
        "size": path.stat().st_size,
        "training": {
            **{k: v for k, v in training.items() if k not in ("metrics", "wall_time_s")},
            "steps": steps,
            # the compute is the sum of the members'
            "wall_time_s": round(sum(m["wall_time_s"] or 0.0 for m in members), 1),
            "soup": {"method": "uniform mean of the members' weights", "members": members},
        },
    }
    registry.add_manifest_entry(entry, manifest=out / registry.MANIFEST_NAME)
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("members", type=Path, nargs="+")
    parser.add_argument("--name", default="dgn-video")
    args = parser.parse_args()
    if len(args.members) < 2:
        raise SystemExit("a soup needs at least two members")
    if any(args.out.resolve() == m.resolve() for m in args.members):
        raise SystemExit(f"{args.out}: the soup must not be written into a member's folder")
    entry = make_soup(args.out, args.members, args.name)
    print(f"{args.out / entry['source']['file']}: mean of {len(args.members)} members, "
          f"sha256 {entry['sha256'][:12]}")  # fmt: skip


if __name__ == "__main__":
    main()
