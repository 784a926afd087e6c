"""Scale out (dgn_cli.shard): --shard K/N partitions photos by a hash of their path and video
segments by k mod N; two shards run as two concurrent processes give byte-identical photos
and a frame-exact video; the planning of one worker per local GPU."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_cli_video import frames_of, make_clip
from typer.testing import CliRunner

from dgn_cli.cli import app
from dgn_cli.errors import DgnError
from dgn_cli.shard import (
    in_shard,
    multi_devices,
    parse_shard,
    plan_workers,
    segment_in_shard,
    worker_argv,
)

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_parse_and_partition_is_exact_and_stable():
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) is None
    for bad in ("4/4", "1", "a/b", "0/0"):
        with pytest.raises(DgnError):
            parse_shard(bad)
    keys = [f"day{d}/img_{i:04d}.jpg" for d in range(3) for i in range(50)]
    owners = {k: [s for s in range(3) if in_shard(k, (s, 3))] for k in keys}
    assert all(len(v) == 1 for v in owners.values())  # every file in exactly one shard
    sizes = [sum(v == [s] for v in owners.values()) for s in range(3)]
    assert min(sizes) > 30  # roughly balanced
    more = keys + [f"day9/new_{i}.jpg" for i in range(40)]
    assert all([s for s in range(3) if in_shard(k, (s, 3))] == owners[k] for k in more[:150])
    assert [k for k in range(9) if segment_in_shard(k, (1, 3))] == [1, 4, 7]


def test_local_gpu_workers_are_sub_shards_of_the_machine_shard():
    assert plan_workers("cuda:0", None, gpus=2) is None and plan_workers("cpu", None, 0) is None
    assert plan_workers("cuda:all", None, gpus=2) == [("cuda:0", (0, 2)), ("cuda:1", (1, 2))]
    plan = plan_workers("cuda:all", (1, 4), gpus=2)
    assert plan == [("cuda:0", (1, 8)), ("cuda:1", (5, 8))]
    keys = [f"f{i}.png" for i in range(200)]
    for _, sub in plan:  # a worker's files all belong to the machine's shard
        assert all(in_shard(k, (1, 4)) for k in keys if in_shard(k, sub))
    union = {k for _, sub in plan for k in keys if in_shard(k, sub)}
    assert union == {k for k in keys if in_shard(k, (1, 4))}
    assert multi_devices("cuda:0,2", gpus=3) == ["cuda:0", "cuda:2"]
    for bad, gpus in (("cuda:all", 0), ("cuda:0,5", 2), ("cuda:0,0", 2), ("cuda:x,1", 2)):
        with pytest.raises(DgnError):
            multi_devices(bad, gpus)
    argv = ["deblur-image", "in/", "-o", "out/", "--device", "cuda:all", "--shard=1/4", "-q"]
    assert worker_argv(argv, "cuda:1", (5, 8)) == [
        "deblur-image", "in/", "-o", "out/", "-q", "--device", "cuda:1", "--shard", "5/8",
    ]  # fmt: skip


def _dgn(*args):
    """Start `python -m dgn_cli ARGS` (this checkout) as its own process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "dgn_cli", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def _wait(procs):
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_two_concurrent_image_shards_equal_one_run(tmp_path, tiny_checkpoints):
    src = tmp_path / "shoot"
    rng = np.random.default_rng(0)
    for i in range(6):
        sub = src / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(sub / f"p{i}.png"), rng.integers(0, 256, (24, 32, 3), np.uint8))
    common = [*tiny_checkpoints.args("image"), "-q", "--keep-background"]
    r = runner.invoke(app, ["deblur-image", str(src), "-o", str(tmp_path / "one"),
                            *map(str, common)])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = tmp_path / "sharded"
    _wait([_dgn("deblur-image", src, "-o", out, "--shard", f"{k}/2", *common) for k in (0, 1)])
    one = _digests(tmp_path / "one")
    assert len(one) == 6 and _digests(out) == one


def test_two_concurrent_video_shards_give_the_same_frames(tmp_path, tiny_checkpoints):
    clip = make_clip(tmp_path / "clip.mp4", frames=14, audio=True)
    common = [*tiny_checkpoints.args("video"), "-q", "--segment-frames", "3"]
    r = runner.invoke(app, ["deblur-video", str(clip), "-o", str(tmp_path / "one.mp4"),
                            *map(str, common)])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = tmp_path / "sharded.mp4"
    _wait([_dgn("deblur-video", clip, "-o", out, "--shard", f"{k}/2", *common) for k in (0, 1)])
    a, b = frames_of(tmp_path / "one.mp4"), frames_of(out)
    assert a.shape == b.shape and a.shape[0] == 14
    assert np.array_equal(a, b)
    assert not (tmp_path / ".sharded.mp4.dgn-work").exists()


def test_one_shard_waits_merge_names_what_is_missing(tmp_path, tiny_checkpoints):
    clip = make_clip(tmp_path / "clip.mp4", frames=8, audio=False)
    out = tmp_path / "out.mp4"
    common = [*tiny_checkpoints.args("video"), "--segment-frames", "2"]
    r = runner.invoke(app, ["deblur-video", str(clip), "-o", str(out), "--shard", "1/2",
                            *common])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "shard 1/2 done" in r.output and not out.exists()
    r = runner.invoke(app, ["deblur-video", str(clip), "-o", str(out), "--merge", *common])
    assert r.exit_code == 1 and "not finished yet" in r.output
    r = runner.invoke(app, ["deblur-video", str(clip), "-o", str(out), "--shard", "0/2",
                            *common])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(frames_of(out)) == 8 and not (tmp_path / ".out.mp4.dgn-work").exists()
