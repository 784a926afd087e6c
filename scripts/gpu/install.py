"""Install GPU-trained weights from a main.sh result folder into weights/.

    python scripts/gpu/install.py FOLDER [NAME ...] [--weights-dir weights] [--continues]

FOLDER holds what main.sh wrote to OUT: NAME.safetensors files and the manifest.json that
`dgn train --export` wrote beside them. Each NAME (default: every entry there) is checked
against its sha256 in that manifest, copied to the weights folder, and its entry replaces the
shipped one, keeping the shipped entry's licence, input, output and notes; the replaced
entry's training record is kept in training.history (earlier records, newest first, each one
flat), so the model card's history stays.
`--continues` says the new weights were trained from the shipped ones (a CPU campaign stretch,
`--init weights/NAME.safetensors`): the shipped entry's training.campaign (the lineage: stages,
cumulative steps and hours) then moves to the new entry, to be extended with the new stage,
instead of staying in the history; the recipe's `init`, which names the file the run
started from wherever it ran (a worktree), is recorded as `weights/NAME.safetensors`.
Install only the models that beat the shipped ones (benchmark.json; see weights/README.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from dgn_cli import registry  # noqa: E402
from dgn_cli.checkpoints import sha256_file  # noqa: E402

KEPT = ("licence", "input", "output", "notes")


def history_of(training: dict) -> list[dict]:
    """`training` and the records before it, newest first, each without its own history.

    Reads both layouts: `history` (a list) and the older `replaced` chain, where each
    replaced record nested the one before it (ten levels deep after ten stretches).
    """
    record = {k: v for k, v in training.items() if k not in ("history", "replaced")}
    chain = history_of(training["replaced"]) if isinstance(training.get("replaced"), dict) else []
    return [record, *chain, *(r for old in training.get("history", []) for r in history_of(old))]


def install(
    folder: Path, names: list[str], weights_dir: Path, continues: bool = False
) -> list[str]:
    source = json.loads((folder / registry.MANIFEST_NAME).read_text())
    entries = {e["name"]: e for e in source["entries"]}
    target_manifest = weights_dir / registry.MANIFEST_NAME
    shipped = {e["name"]: e for e in json.loads(target_manifest.read_text())["entries"]}
    done = []
    for name in names or list(entries):
        if name not in entries:
            raise SystemExit(f"{folder}: no manifest entry {name!r}")
        entry = dict(entries[name])
        path = folder / entry["source"]["file"]
        if sha256_file(path) != entry["sha256"]:
            raise SystemExit(f"{path}: sha256 does not match its manifest entry; not installed")
        old = shipped.get(name, {})
        for key in KEPT:
            if key in old:
                entry[key] = old[key]
        if "training" in old:
            history = history_of(old["training"])
            training = {**entry["training"]}
            if continues:
                if "campaign" in history[0]:
                    training["campaign"] = history[0].pop("campaign")
                if "init" in training.get("recipe", {}):
                    training["recipe"] = {**training["recipe"], "init": f"weights/{path.name}"}
            entry["training"] = {**training, "history": history}
        shutil.copyfile(path, weights_dir / path.name)
        registry.add_manifest_entry(entry, manifest=target_manifest)
        done.append(name)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("names", nargs="*")
    parser.add_argument("--weights-dir", type=Path, default=ROOT / "weights")
    parser.add_argument("--continues", action="store_true",
                        help="the new weights continue the shipped ones: keep their campaign "
                             "record on the new entry")  # fmt: skip
    args = parser.parse_args()
    for name in install(args.folder, args.names, args.weights_dir, args.continues):
        print(f"installed {name} into {args.weights_dir}")


if __name__ == "__main__":
    main()
