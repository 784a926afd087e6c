"""Scale out: split a batch of photos or the segments of one video into N shards, and plan one
worker process per local GPU. Pure functions; the schedulers people already have (SLURM job
arrays, Kubernetes Indexed Jobs, GNU parallel) run the shards, dgn does not schedule.

    shard = parse_shard("1/4")                  # (1, 4): shard 1 of 0..3
    in_shard("trip/day1/img_0001.jpg", shard)   # by a hash of the path: stable as files come
    segment_in_shard(7, shard)                  # video segment 7 -> 7 % 4 == 1
    plan_workers("cuda:all", shard, gpus=2)     # [("cuda:0", (1, 8)), ("cuda:1", (5, 8))]

Shards are numbered from 0 (SLURM_ARRAY_TASK_ID and JOB_COMPLETION_INDEX count from 0; GNU
parallel's {%} from 1, so write `$(({%}-1))/N`).

Photos: a file belongs to shard K of N when sha256(its path relative to its input folder) mod N
== K. Adding files never moves an existing file to another shard (a round-robin over the sorted
list would), and every machine agrees without talking to the others.

Video segments: segment k (frames k*S .. k*S+S-1, the --resume unit) belongs to shard k mod N,
so every shard gets segments from the whole clip and they finish at about the same time.

Local GPUs: with G devices, shard K of N is split into G sub-shards K + g*N of N*G (g = 0..G-1);
a file or segment in sub-shard K + g*N is in shard K of N, so workers on several machines and
several GPUs never overlap.
"""

from __future__ import annotations

import hashlib
import re

from dgn_cli.errors import DgnError

Shard = tuple[int, int]


def parse_shard(text: str | None) -> Shard | None:
    """ "K/N" -> (K, N) with 0 <= K < N; None stays None."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise DgnError(f"--shard {text!r}: write K/N, e.g. 0/4 (shards count from 0)")
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1 or k >= n:
        raise DgnError(f"--shard {text}: K must be in 0..N-1 (shards count from 0), N >= 1")
    return k, n


def shard_of(key: str, n: int) -> int:
    digest = hashlib.sha256(key.replace("\\", "/").encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


def in_shard(key: str, shard: Shard | None) -> bool:
    """Whether the file with this relative path belongs to `shard` (all do when None)."""
    return shard is None or shard_of(key, shard[1]) == shard[0]


def segment_in_shard(segment: int, shard: Shard | None) -> bool:
    return shard is None or segment % shard[1] == shard[0]


def multi_devices(spec: str, gpus: int) -> list[str] | None:
    """The local devices of a multi-device --device ("cuda:all", "cuda:0,1", "0,1"), or None
    for a single device."""
    spec = spec.strip()
    if spec == "cuda:all":
        if gpus < 1:
            raise DgnError("--device cuda:all: no CUDA GPU here; use --device cpu")
        return [f"cuda:{i}" for i in range(gpus)]
    if "," not in spec:
        return None
    devices = []
    for part in spec.removeprefix("cuda:").split(","):
        part = part.strip().removeprefix("cuda:")
        if not part.isdigit():
            raise DgnError(f"--device {spec}: write cuda:all or a list like cuda:0,1")
        if int(part) >= gpus:
            raise DgnError(f"--device {spec}: there is no cuda:{part} ({gpus} GPU(s) here)")
        devices.append(f"cuda:{int(part)}")
    if len(set(devices)) != len(devices):
        raise DgnError(f"--device {spec}: a GPU is listed twice")
    return devices


def plan_workers(spec: str, shard: Shard | None, gpus: int) -> list[tuple[str, Shard]] | None:
    """One (device, sub-shard) per local GPU for a multi-device --device; None otherwise."""
    devices = multi_devices(spec, gpus)
    if devices is None:
        return None
    k, n = shard or (0, 1)
    g = len(devices)
    return [(dev, (k + i * n, n * g)) for i, dev in enumerate(devices)]


def worker_argv(argv: list[str], device: str, shard: Shard) -> list[str]:
    """The command line of one worker: `argv` (without the program) with --device and --shard
    replaced (both the `--opt value` and `--opt=value` spellings)."""
    out: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in ("--device", "--shard"):
            skip = "=" not in arg and i + 1 < len(argv)
            continue
        out.append(arg)
    return [*out, "--device", device, "--shard", f"{shard[0]}/{shard[1]}"]
