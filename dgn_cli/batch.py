"""Batches of files: expand inputs into jobs with output paths, run them, record outcomes.

    batch = plan_batch(["shoot/", "x.png"], Path("sharp/"), ext=None)
    records = run_batch(batch, process, listener, overwrite=False)

Used by `dgn deblur-image` and `dgn depth`. One INPUT that is a file -> OUT is that output
file; several inputs, a folder or a glob -> OUT is a folder mirroring the input tree; without
OUT each output goes beside its input. An output that would replace an input is refused, two
inputs writing one output are refused, existing outputs are skipped unless `overwrite`, a
failing file is recorded and the batch goes on. The caller's `listener` shows progress and
the one-line reports; this module never prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dgn_cli import io
from dgn_cli.errors import DgnError, OutputError
from dgn_cli.shard import in_shard


@dataclass
class Job:
    src: Path
    dst: Path
    # The outputs this run writes (the main one and its extras); None = all of them. A rerun
    # of a batch whose extras failed (disk full) writes only the missing ones.
    write: set[Path] | None = None
    key: str = ""  # the input's path relative to its folder: what --shard hashes

    def wants(self, path: Path) -> bool:
        return self.write is None or path in self.write


@dataclass
class Batch:
    jobs: list[Job]
    errors: list[str]  # inputs that matched nothing
    to_file: bool


def plan_batch(
    inputs: list[str],
    output: Path | None,
    *,
    ext: str | None,
    stem_suffix: str = "",
) -> Batch:
    """Expand the inputs and decide each output path (see the module docstring).

    `ext`: the output extension for every file (None = keep each input's). `output` None:
    each output goes beside its input as NAME`stem_suffix`.EXT (inputs already named so are
    left out of folders and globs, so a rerun does not deblur its own outputs)."""
    single = len(inputs) == 1 and Path(inputs[0]).expanduser().is_file()
    if output is None:
        found, errors = io.expand_inputs(inputs)
        if stem_suffix and not single:
            found = [f for f in found if not f.path.stem.endswith(stem_suffix)]
        dsts = [
            f.path.with_name(f.path.stem + stem_suffix + (ext or f.path.suffix.lower()))
            for f in found
        ]
        jobs = [Job(f.path, d, key=_key(f)) for f, d in zip(found, dsts, strict=True)]
        return Batch(jobs, errors, single)
    output = output.expanduser()
    looks_like_file = (
        not output.is_dir() and io.is_image_path(output) and not str(output).endswith(("/", "\\"))
    )
    many = len(inputs) > 1 or Path(inputs[0]).expanduser().is_dir() or set("*?[") & set(inputs[0])
    if looks_like_file and many:
        raise OutputError(
            f"{output}: several inputs (or a folder or glob) need -o to be a folder, "
            f"not one file; use e.g. -o {output.with_suffix('')}/"
        )
    to_file = single and not output.is_dir() and output.suffix != ""
    to_file = to_file and not str(output).endswith(("/", "\\"))
    exclude = None if to_file else output
    found, errors = io.expand_inputs(inputs, exclude=exclude)
    dsts = io.output_paths(found, output, to_file, ext, stem_suffix)
    jobs = [Job(f.path, d, key=_key(f)) for f, d in zip(found, dsts, strict=True)]
    return Batch(jobs, errors, to_file)


def _key(found: io.Found) -> str:
    """The path --shard hashes: relative to the input folder, so it is the same on every
    machine whatever the mount point."""
    p, base = found.path, found.base
    return (p.relative_to(base) if p.is_relative_to(base) else Path(p.name)).as_posix()


def select_shard(batch: Batch, shard: tuple[int, int] | None) -> Batch:
    """Only the jobs of `shard` (dgn_cli.shard: by a hash of each input's relative path)."""
    if shard is None:
        return batch
    jobs = [j for j in batch.jobs if in_shard(j.key, shard)]
    return Batch(jobs, batch.errors, batch.to_file)


@dataclass
class Record:
    """One file's outcome, for the summary and --json."""

    input: str
    output: str
    status: str = "ok"  # ok | skipped | failed
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = {"input": self.input, "output": self.output, "status": self.status}
        if self.error:
            d["error"] = self.error
        return {**d, **self.extra}


class BatchListener(Protocol):
    """What a batch tells its caller (the CLI shows it; the library never prints)."""

    def start_file(self, name: str) -> None: ...
    def on_tile(self, done: int, total: int) -> None: ...
    def end_file(self) -> None: ...
    def report(self, level: str, text: str) -> None:
        """level: "skip" | "note" | "error"; text names the file."""


def run_batch(
    batch: Batch,
    process: Callable[[Job, BatchListener], dict[str, Any]],
    listener: BatchListener,
    *,
    overwrite: bool,
    extra_outputs: Callable[[Path], list[Path]] = lambda dst: [],
) -> list[Record]:
    """Run `process` on each job; refuse outputs equal to an input, skip existing outputs
    unless `overwrite`, report a failing file in one line and go on."""
    inputs = {j.src.resolve() for j in batch.jobs}
    planned: set[Path] = set()
    records: list[Record] = []
    for job in batch.jobs:
        rec = Record(str(job.src), str(job.dst))
        records.append(rec)
        listener.start_file(job.src.name)
        targets = [job.dst, *extra_outputs(job.dst)]
        try:
            resolved = [t.resolve() for t in targets]
            if any(t in inputs for t in resolved):
                raise OutputError(f"{job.dst}: refusing to overwrite an input; choose another -o")
            if any(t in planned for t in resolved):
                raise OutputError(f"{job.dst}: two inputs would write this same output")
            planned.update(resolved)
            # An item is done only when all its outputs exist: a rerun makes the missing
            # ones (e.g. a --compare that failed on a full disk) and keeps the others.
            missing = [t for t in targets if not t.exists()]
            if not overwrite and not missing:
                rec.status = "skipped"
                listener.report("skip", f"{job.dst} exists (use --overwrite to replace it)")
            else:
                job.write = None if overwrite or len(missing) == len(targets) else set(missing)
                t0 = time.perf_counter()
                rec.extra = process(job, listener)
                if job.write is not None:
                    rec.extra["completed"] = [str(t) for t in missing]
                    rec.extra.setdefault("notes", []).append(
                        "made the missing " + ", ".join(t.name for t in missing)
                    )
                rec.extra["seconds"] = round(time.perf_counter() - t0, 3)
                for note in rec.extra.get("notes", []):
                    listener.report("note", f"{job.dst}: {note}")
        except (DgnError, OSError) as e:
            rec.status, rec.error = "failed", str(e)
            listener.report("error", str(e))
        listener.end_file()
    return records
