"""`dgn weights list | fetch NAME... | verify [NAME...]`: the checkpoint registry from the CLI.

- list: every registry entry, its kind, licence and where it stands here (in weights/, in the
  Hugging Face cache, downloadable, manual download, untrained). Nothing is hashed or fetched.
- fetch: resolve each name (weights/ -> cache -> Hub download at the pinned revision) and
  verify its sha256, so that later runs work offline. Prints each file's digest; where the
  manifest pins none, the digest is printed so it can be pinned.
- verify: hash what is present locally (or only NAME...) against the manifest / Hub digest.

Exit code 1 when any named checkpoint fails (missing, mismatch); the others are still done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

import typer
from rich.table import Table

from dgn_cli.checkpoints import (
    checkpoint_state,
    expected_sha256,
    fetch_checkpoint,
    import_checkpoint,
    verify_file,
)
from dgn_cli.commands.common import (
    JsonOpt,
    QuietOpt,
    cli_errors,
    err_console,
    fail,
    out_console,
    print_json,
)
from dgn_cli.errors import DgnError
from dgn_cli.registry import Entry, get_entry, load_manifest

weights_app = typer.Typer(help="List, fetch and verify checkpoints.", no_args_is_help=True)

NamesArg = Annotated[list[str], typer.Argument(help="registry names (see `dgn weights list`)")]
OptionalNamesArg = Annotated[
    list[str] | None, typer.Argument(help="registry names; default: every present checkpoint")
]


def _describe(entry: Entry) -> dict:
    """Where an entry stands here, without hashing or downloading."""
    state, path = checkpoint_state(entry)
    if state == "local":
        status = "present"
    elif state == "cached":
        status = "cached"
    elif entry.status == "untrained":
        status = "untrained"
    elif entry.status == "manual":
        status = "manual download"
    elif entry.source.on_hub:
        status = "not downloaded"
    else:
        status = "missing"
    if entry.source.on_hub:
        source = f"hub:{entry.source.repo_id}"
    elif entry.source.url:
        source = urlparse(entry.source.url).netloc or entry.source.url
    else:
        source = f"weights/{entry.source.local_name}"
    return {
        "name": entry.name,
        "kind": entry.kind,
        "architecture": entry.architecture,
        "status": status,
        "path": str(path) if path else None,
        "source": source,
        "url": entry.source.url,
        "revision": entry.source.revision,
        "filename": entry.source.local_name,
        "sha256": entry.sha256,
        "licence": entry.licence,
    }


_HINTS = {
    "not downloaded": "not downloaded: `dgn weights fetch NAME` (needs network; later runs are "
    "offline)",
    "manual download": "manual download: not on the Hub; get the file from the source shown and "
    "pass it with --depth-model PATH",
    "untrained": "untrained: no weights yet; `dgn train --export NAME` creates them",
    "cached": "cached: in the Hugging Face cache, usable offline",
    "present": "present: a file in weights/ (or $DGN_WEIGHTS_DIR)",
}
_STYLES = {"present": "green", "cached": "green", "untrained": "yellow"}


@weights_app.command("list")
@cli_errors
def list_weights(json_out: JsonOpt = False) -> None:
    """Show every known checkpoint and whether it is present here (nothing is downloaded)."""
    rows = [_describe(e) for e in load_manifest().values()]
    if json_out:
        print_json(rows)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("name", "kind", "status", "licence"):
        table.add_column(column, no_wrap=True)  # short words: never broken in the middle
    table.add_column("source", overflow="fold")  # a long URL may fold on a narrow terminal
    for row in rows:
        table.add_row(
            row["name"],
            row["kind"],
            row["status"],
            row["licence"],
            row["source"],
            style=_STYLES.get(row["status"]),
        )
    out_console().print(table)
    for status in dict.fromkeys(row["status"] for row in rows):
        if status in _HINTS:
            err_console.print(f"  {_HINTS[status]}", style="dim", highlight=False)


@weights_app.command("fetch")
def fetch(
    names: NamesArg,
    local_dir: Annotated[
        Path | None,
        typer.Option(
            "--local-dir",
            help="take the files from this folder (e.g. filled by `hf download ... --local-dir "
            "DIR` on a machine with network) instead of downloading",
        ),
    ] = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Download checkpoints into the Hugging Face cache (pinned revision) and verify them;
    with --local-dir, take them from a folder (offline machines)."""
    if quiet or json_out:
        _quiet_hub()
    results, failed = [], False
    for name in names:
        try:
            if local_dir is not None:
                path, digest = import_checkpoint(name, local_dir)
            else:
                path, digest = fetch_checkpoint(name)
        except DgnError as e:
            failed = True
            results.append({"name": name, "ok": False, "error": str(e)})
            if not json_out:
                err_console.print(f"[bold red]error:[/] {e}", soft_wrap=True)
            continue
        pinned = get_entry(name).sha256
        results.append(
            {"name": name, "ok": True, "path": str(path), "sha256": digest, "pinned": bool(pinned)}
        )
        if not quiet and not json_out:
            note = "" if pinned else " (not pinned in weights/manifest.json: pin this digest)"
            out_console().print(f"{name}: {path}\n  sha256 {digest}{note}", soft_wrap=True)
    if json_out:
        print_json(results)
    if failed:
        raise typer.Exit(1)


@weights_app.command("verify")
def verify(
    names: OptionalNamesArg = None, quiet: QuietOpt = False, json_out: JsonOpt = False
) -> None:
    """Hash present checkpoints and compare them with the pinned (or Hub) sha256."""
    try:
        entries = load_manifest()
        selected = [get_entry(n) for n in names] if names else list(entries.values())
    except DgnError as e:
        raise fail(str(e)) from None
    results, failed = [], False
    for entry in selected:
        state, path = checkpoint_state(entry)
        row = {"name": entry.name, "state": state, "path": str(path) if path else None}
        if path is None:
            row.update(ok=not names, result="not present")
            failed |= bool(names)  # a checkpoint the user asked about must be there
        else:
            try:
                digest = verify_file(path, entry)
                known = expected_sha256(entry, path)
                row.update(ok=True, sha256=digest, result="ok" if known else "unpinned")
            except DgnError as e:
                failed = True
                row.update(ok=False, result="sha256 mismatch", error=str(e))
        results.append(row)
        if not json_out and not (quiet and row["ok"]):
            mark = "[green]ok[/]" if row["ok"] else "[bold red]FAIL[/]"
            if row["result"] == "not present" and row["ok"]:
                mark = "[dim]--[/]"
            detail = row.get("error") or row["result"]
            if row["result"] == "unpinned":
                detail = f"no pinned sha256; file digest {row['sha256']}"
            out_console().print(f"{mark} {entry.name}: {detail}", soft_wrap=True)
    if json_out:
        print_json(results)
    if failed:
        raise typer.Exit(1)


def _quiet_hub() -> None:
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()


def register(app: typer.Typer) -> None:
    app.add_typer(weights_app, name="weights")
