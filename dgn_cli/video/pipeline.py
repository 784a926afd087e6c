"""Deblur a video: streaming decode -> five-frame sliding window -> DGN -> encode, audio kept.

    engine = Engine(EngineConfig(kind="video"))
    result = deblur_video(engine, "clip.mp4", "clip_sharp.mp4", VideoOptions(), progress=cb)

Pipeline (three threads, bounded queues, so memory holds a few frames whatever the length):

    ffmpeg decoder -> [queue] -> model (this thread) -> [queue] -> encoder thread -> ffmpeg

- Decoding: every frame is passed through (no drop/duplicate), as 8-bit RGB, or 16-bit RGB for
  sources with more than 8 bits (see video.ffmpeg.FrameDecoder).
- The window (video.window): frame t is restored from t-2 .. t+2 stacked in time order
  (15 channels), reflected at the ends (t = 0 sees 2, 1, 0, 1, 2). The initial depth of each
  frame is estimated once, on the whole frame, when it becomes the centre, and the DGN
  refines it; frames are converted to tensors once and reused while they are in the window.
  With an image DGN (frames == 1, `--model image`) the window is the frame itself. Large
  frames are tiled by the engine exactly like images.
- Scene cuts (video.scenes): each decoded frame gets a cheap signature in the decoder thread;
  a frame far from its predecessor (adaptive threshold, `scene_threshold`, 0 = off) starts a
  new shot, and the window is reflected inside each shot as at the clip's ends, so no frame
  is restored with frames of another shot. The cuts are listed in the result.
- Encoding: frames go to ffmpeg in segments of `segment_frames` frames (NUT files in a hidden
  work folder beside the output, `.<name>.dgn-work/`), at the source's average frame rate, so
  the output has the same frame count, rate and duration. The finished segments are joined
  by the concat demuxer and muxed with the source's audio (copied; transcoded only when the
  container refuses the codec) and subtitles (copied, else converted, else dropped), into a
  temporary file beside the output that is renamed onto it only when everything succeeded.
- Crash safety and --resume: an interrupted run leaves nothing at the output path; its
  finished segments and a manifest of the options stay in the work folder (the unfinished
  segment is deleted). `resume=True` reuses them when the manifest matches (same input file,
  size and mtime, same model and encoding options): the decoder runs from the start again,
  but the model skips every frame already encoded, so the result equals an uninterrupted
  run. A work folder with finished frames is never discarded silently: without resume it
  takes `overwrite=True`. On success the work folder is removed.
- Trust: a segment counts as finished only when its fsynced file matches the `.done` record
  (frames, size, sha256) written after it; resume remakes any other, and the joined file's
  frame count is checked before the rename. The work folder is created 0700, refused when it
  is a symlink or another user's, locked (`WorkLock`, flock) against a second writer, and only
  files with the names a run creates are ever deleted from it.

Variable frame rate sources: every frame is kept, and the output runs at the source's
average rate, so frame count and total duration match but the individual frame times are
evened out (the rawvideo pipe into the encoder carries no timestamps). The result says so
(`notes`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import queue
import re
import stat
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dgn_cli import blend
from dgn_cli.engine import Engine
from dgn_cli.errors import InputError, OutputError
from dgn_cli.fsutil import atomic_path, write_error, write_text_atomic
from dgn_cli.progress import Progress
from dgn_cli.shard import segment_in_shard
from dgn_cli.tensors import centre_index
from dgn_cli.video.codecs import check_encoding, choose_encoding
from dgn_cli.video.ffmpeg import (
    SEGMENT,
    EncodeSettings,
    FrameDecoder,
    FrameTimes,
    SegmentEncoder,
    concat_and_mux,
    segment_frames_if_valid,
    valid_segments,
    write_concat_list,
)
from dgn_cli.video.probe import VideoInfo, count_frames, probe, scan
from dgn_cli.video.scenes import DEFAULT_SCENE_THRESHOLD, SceneDetector, signature
from dgn_cli.video.window import SlidingWindow

MANIFEST_VERSION = 1
DEFAULT_SEGMENT_FRAMES = 300
COMPARE_GAP = 8  # white px between input and output in the compare video
MASK_RADIUS = 2  # the depth mask is steadied over frames t-2 .. t+2 (blend.temporal_depth)


@dataclass
class VideoOptions:
    """What to write besides the engine's settings (CLI: `dgn deblur-video --help`)."""

    encode: EncodeSettings | None = None  # None: the output container's codec (video.codecs)
    start: float | None = None  # seconds into the input
    duration: float | None = None  # seconds from start
    compare: Path | None = None  # side-by-side input | output video
    depth: Path | None = None  # the depth the DGN used, as a gray video (white = near)
    segment_frames: int = DEFAULT_SEGMENT_FRAMES
    resume: bool = False
    overwrite: bool = False
    queue_size: int = 4  # frames buffered between decoder, model and encoder
    scene_threshold: float = DEFAULT_SCENE_THRESHOLD  # scene-cut sensitivity; 0 = no cuts
    control: blend.Control | None = None  # strength and depth mask (dgn_cli.blend)
    shard: tuple[int, int] | None = None  # (K, N): only segments k with k % N == K (dgn_cli.shard)


@dataclass
class VideoResult:
    input: str
    output: str
    frames: int
    fps: float  # the video's frame rate
    duration: float  # output duration, frames / fps
    seconds: float  # wall time
    frames_per_second: float  # processing speed (frames restored this run / wall time)
    resumed_frames: int
    audio: dict[str, Any]
    extra_outputs: dict[str, str]
    source: dict[str, Any]
    timing: dict[str, float]
    notes: list[str]
    scene_cuts: list[dict[str, float]] = field(default_factory=list)  # frame, time, score
    # "written": the output is complete; "shard-done": this shard's segments are finished and
    # others are missing (the last shard to finish, or merge_video, writes the output)
    status: str = "written"
    missing_segments: list[int] = field(default_factory=list)
    # video DGN with align on (dgn_cli.frame_align): frames with motion, frames with a neighbour
    # warped, neighbours replaced by the centre (no match), the largest motion (px), trusted share
    alignment: dict[str, Any] | None = None
    # --video-depth parallax: {"parallax": frames whose D_b came from the window's motion
    # parallax, "estimator": frames without parallax (still camera), estimated from the frame}
    depth_sources: dict[str, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Frame:
    """One decoded frame while it is in the window."""

    x: torch.Tensor  # (1, 3, H, W) float32 [0, 1]
    raw: np.ndarray | None  # (H, W, 3) as decoded, kept only for --compare
    depth: torch.Tensor | None = None  # initial depth, computed once when needed
    sig: tuple | None = None  # scene signature (video.scenes), dropped once compared


@dataclass
class _AlignmentTally:
    """What frame_align did over the frames restored this run (VideoResult.alignment)."""

    frames_with_motion: int = 0  # windows with a neighbour >= 1 px away (median flow)
    frames_aligned: int = 0  # windows with a neighbour warped onto the centre
    neighbours_replaced: int = 0  # no match: the centre frame used in its place
    largest_motion_px: float = 0.0
    neighbours: int = 0
    trusted_sum: float = 0.0

    def add(self, report) -> None:
        if report is None:
            return
        self.frames_with_motion += any(m >= 1.0 for m in report.motion_px)
        self.frames_aligned += bool(report.warped)
        self.neighbours_replaced += len(report.replaced)
        self.largest_motion_px = max(self.largest_motion_px, round(report.largest_motion, 1))
        mid = len(report.trusted) // 2
        others = report.trusted[:mid] + report.trusted[mid + 1 :]
        self.neighbours += len(others)
        self.trusted_sum += sum(others)

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames_with_motion": self.frames_with_motion,
            "frames_aligned": self.frames_aligned,
            "neighbours_replaced": self.neighbours_replaced,
            "largest_motion_px": self.largest_motion_px,
            # mean share of a neighbour's pixels taken from it (the rest: from frame t)
            "trusted_fraction": round(self.trusted_sum / self.neighbours, 3)
            if self.neighbours
            else 1.0,
        }


def open_input(src: str | Path, opts: VideoOptions) -> tuple[VideoInfo, list[str]]:
    """Probe and scan `src` (video.probe) before any model work: InputError for a file that is
    not a video, has no video stream, or is truncated/damaged; with `opts.duration` set a
    damaged file is accepted (with a note), so the good part of it can be saved."""
    info = probe(src)
    if info.container in _STILL_FORMATS or info.container.endswith("_pipe"):
        raise InputError(
            f"{info.path}: a still image ({info.video.codec}), not a video; "
            f"use dgn deblur-image {info.path}"
        )
    problems = scan(info)
    notes = []
    if problems and opts.duration is None:
        raise InputError(
            f"{info.path}: the video is truncated or damaged ({problems[0]}); re-copy it, or "
            "save the readable part with --duration"
        )
    if problems:
        notes.append(f"the input is damaged ({problems[0]}); decoding what can be read")
    return info, notes


_STILL_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "tiff_pipe", "bmp_pipe")


def prepare_outputs(
    src: Path, dst: Path, opts: VideoOptions, info: VideoInfo, notes: list[str]
) -> VideoOptions:
    """Check every output before any frame is decoded: paths (not the input, not existing
    unless overwrite, not a folder), containers, and the encoding options against the codec
    (a two-frame trial encode, video.codecs). Returns `opts` with the encoding settled (the
    container's codec when none was given, the source's colour matrix); odd sizes in 4:2:0
    are noted (the edge is repeated to the next even size)."""
    extra = {"compare": opts.compare, "depth": opts.depth}
    extra = {k: Path(v) for k, v in extra.items() if v is not None}
    _check_targets(src, [dst, *extra.values()], opts.overwrite)
    settings = dataclasses.replace(opts.encode) if opts.encode else choose_encoding(dst)
    if settings.color_matrix is None:
        settings.color_matrix, settings.color_range = info.color_matrix, info.color_range
    widths = {dst: info.width, **{p: info.width for p in extra.values()}}
    if "compare" in extra:
        widths[extra["compare"]] = _compare_width(info.width, opts)
    for path, width in widths.items():
        check_encoding(settings, path, width, info.height, info.fps)
    pad_w, pad_h = settings.pad(info.width, info.height)
    if pad_w or pad_h:
        notes.append(
            f"{info.width}x{info.height} has an odd side, which {settings.pix_fmt} cannot hold: "
            f"written as {info.width + pad_w}x{info.height + pad_h} with the edge repeated "
            "(--pix-fmt yuv444p keeps the exact size)"
        )
    return dataclasses.replace(opts, encode=settings)


def _uses_mask(opts: VideoOptions) -> bool:
    return opts.control is not None and opts.control.uses_mask


def _compare_width(width: int, opts: VideoOptions) -> int:
    """input | output, or input | mask | output when a depth mask is used."""
    panels = 3 if _uses_mask(opts) else 2
    return panels * width + (panels - 1) * COMPARE_GAP


def work_dir(output: Path) -> Path:
    """The hidden folder beside `output` holding segments and the manifest of a run."""
    return output.parent / f".{output.name}.dgn-work"


LOCK_NAME = "lock"
# Everything a run creates in its work folder; nothing else there is ever deleted.
_OURS = re.compile(
    r"^(?:manifest\.json|frames\.json|lock|lock\.\d+of\d+|decode\.log|tmp\w+\.log|\.manifest\.\w+\.tmp\.json"
    r"|[a-z]+(?:_encode\.log|\.filter|\.ffconcat)|[a-z]+_\d{6}(?:\.part)?\.nut"
    r"|[a-z]+_\d{6}\.nut\.done|\.[a-z]+_\d{6}\.nut\.\w+\.tmp\.done)$"
)


class WorkBusy(OutputError):
    """Another process holds the lock of this work folder."""


class WorkLock:
    """The work folder of one output, checked and locked: created 0700 by this user; refused
    when it is a symbolic link, not a folder, or owned by someone else; `flock`ed so that a
    second process writing the same output is refused instead of both crashing."""

    def __init__(self, output: Path, name: str = LOCK_NAME, what: str = "writing this output"):
        self.path = work_dir(output)
        for _ in range(20):
            self._check_folder(output)
            lock = self.path / name
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:  # the folder was removed by a run that just finished
                continue
            except OSError as e:
                raise write_error(lock, e) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise WorkBusy(
                    f"{output}: another dgn process is {what} (it holds {lock}); "
                    "wait for it to finish or choose another -o"
                ) from None
            try:  # the lock is ours only if the file is still the one in the folder
                same = os.stat(lock, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd: int | None = fd
                return
            os.close(fd)
        raise OutputError(f"{self.path}: the work folder keeps changing; is another run busy?")

    def _check_folder(self, output: Path) -> None:
        work = self.path
        try:
            os.mkdir(work, 0o700)
        except FileExistsError:
            pass
        except OSError as e:
            raise write_error(output, e) from None
        st = os.lstat(work)
        if stat.S_ISLNK(st.st_mode):
            raise OutputError(
                f"{work}: the work folder is a symbolic link; refusing to follow it (remove it)"
            )
        if not stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{work}: in the way of the work folder (not a folder); remove it")
        if st.st_uid != os.getuid():
            raise OutputError(
                f"{work}: the work folder belongs to another user; refusing to use it"
            )

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def remove_ours(work: Path, keep: set[str] = frozenset(), remove_folder: bool = True) -> None:
    """Delete the files a run creates in `work` (regular files with our names only, never
    following a link), except `keep`; then the folder itself if it is empty."""
    with contextlib.suppress(OSError):
        for p in work.iterdir():
            if p.name in keep or not _OURS.match(p.name):
                continue
            with contextlib.suppress(OSError):
                if stat.S_ISREG(os.lstat(p).st_mode):
                    os.unlink(p)
    if remove_folder:
        with contextlib.suppress(OSError):
            os.rmdir(work)  # only if empty: anything else there stays


def _file_id(path: str | None) -> dict | str | None:
    if path is None:
        return None
    p = Path(path)
    if p.is_file():
        st = p.stat()
        return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return path


def _manifest(engine: Engine, info: VideoInfo, opts: VideoOptions, tracks: list[str]) -> dict:
    cfg = engine.config
    key = {
        "input": _file_id(str(info.path)),
        "weights": _file_id(cfg.weights),
        "depth_model": _file_id(cfg.depth_model),
        "frames": engine.dgn.config.frames,
        "device": engine.device.type,
        "precision": engine.precision,
        "tile": cfg.tile,
        "tile_overlap": cfg.tile_overlap,
        "encode": asdict(opts.encode),
        "start": opts.start,
        "duration": opts.duration,
        "segment_frames": opts.segment_frames,
        "tracks": tracks,
        "scene_threshold": opts.scene_threshold,
        "self_ensemble": cfg.self_ensemble,
        "align": engine.align,
    }
    if engine.video_depth != "estimator":  # only then: earlier runs' digests stay valid
        key["video_depth"] = engine.video_depth
    if opts.control is not None and opts.control.active:
        key["control"] = opts.control.describe()
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return {"version": MANIFEST_VERSION, "key": key, "digest": digest}


def _prepare_work(
    work: Path, manifest: dict, tracks: list[str], opts: VideoOptions, notes
) -> dict[int, int]:
    """Set up the (locked) work folder; returns {segment index: frames} of the finished,
    verified segments to reuse. Damaged ones (0-byte, truncated, altered, no record) are
    deleted and made again."""
    old = None
    with contextlib.suppress(OSError, ValueError):
        old = json.loads((work / "manifest.json").read_text())
    per_track = [valid_segments(work, t) for t in tracks]
    done = {
        k: n for k, n in per_track[0].items() if all(other.get(k) == n for other in per_track[1:])
    }
    if opts.resume and old and old.get("digest") == manifest["digest"] and done:
        keep = {f"{t}_{k:06d}.nut{x}" for t in tracks for k in done for x in ("", ".done")}
        bad = sorted(
            p.name
            for p in work.iterdir()
            if (m := SEGMENT.match(p.name)) and m.group("track") in tracks and p.name not in keep
        )
        remove_ours(work, keep | {"manifest.json", LOCK_NAME}, remove_folder=False)
        notes.append(f"resumed: reusing {sum(done.values())} finished frames")
        if bad:
            notes.append(
                f"{len(bad)} unfinished or damaged segment(s) made again (first: {bad[0]})"
            )
        return done
    if done and not opts.resume and not opts.overwrite:
        raise OutputError(
            f"{work}: an interrupted run left finished frames here; pass --resume to "
            "continue it or --overwrite to start over"
        )
    if opts.resume and done and not opts.overwrite:
        old_key = (old or {}).get("key", {})
        differ = sorted(k for k in manifest["key"] if old_key.get(k) != _jsonish(manifest, k))
        raise OutputError(
            f"{work}: the interrupted run differs in {', '.join(differ) or 'its manifest'}; "
            "rerun it with the same input and options, or pass --overwrite to start over"
        )
    if opts.resume and old is None:
        notes.append("--resume: no interrupted run found; starting from the first frame")
    elif opts.resume:
        notes.append("--resume: no finished segment could be verified; starting over")
    remove_ours(work, {LOCK_NAME}, remove_folder=False)
    write_text_atomic(work / "manifest.json", json.dumps(manifest, indent=2, default=str))
    return {}


def _prepare_shard_work(work: Path, manifest: dict, tracks: list[str], notes) -> dict[int, int]:
    """Shared work folder of a sharded run: the manifest must be the same for every shard
    (written by the first); nothing of another shard is touched. -> the finished, verified
    segments (of any shard) to skip."""
    old = None
    with contextlib.suppress(OSError, ValueError):
        old = json.loads((work / "manifest.json").read_text())
    if old is not None and old.get("digest") != manifest["digest"]:
        differ = sorted(
            k for k in manifest["key"] if old.get("key", {}).get(k) != _jsonish(manifest, k)
        )
        raise OutputError(
            f"{work}: this work folder belongs to a run with other {', '.join(differ) or 'options'}"
            "; give every shard the same input and options, or remove the folder"
        )
    if old is None:
        write_text_atomic(work / "manifest.json", json.dumps(manifest, indent=2, default=str))
    per_track = [valid_segments(work, t) for t in tracks]
    done = {
        k: n for k, n in per_track[0].items() if all(other.get(k) == n for other in per_track[1:])
    }
    if done:
        notes.append(f"{len(done)} finished segment(s) found in {work.name}, not made again")
    return done


def _missing_segments(work: Path, tracks: list[str], frames: int, n: int) -> list[int]:
    counts = [min(n, frames - k * n) for k in range((frames + n - 1) // n)]
    per_track = [valid_segments(work, t) for t in tracks]
    return [k for k, c in enumerate(counts) if any(v.get(k) != c for v in per_track)]


def merge_video(
    src: str | Path,
    dst: str | Path,
    opts: VideoOptions | None = None,
    *,
    info: VideoInfo | None = None,
) -> VideoResult:
    """Join the segments of a sharded run (`--shard` on several machines) into `dst` without
    running any model: OutputError naming the missing segments if not all are there."""
    t0 = time.perf_counter()
    opts = opts or VideoOptions()
    src, dst = Path(src), Path(dst)
    notes: list[str] = []
    if info is None:
        info, notes = open_input(src, opts)
    work = work_dir(dst)
    try:
        manifest = json.loads((work / "manifest.json").read_text())
        frames = int(json.loads((work / "frames.json").read_text())["frames"])
    except (OSError, ValueError, KeyError):
        raise OutputError(
            f"{work}: no finished sharded run to merge here (a shard writes frames.json once it "
            "has decoded the whole clip); run the shards first"
        ) from None
    key = manifest.get("key", {})
    tracks = key.get("tracks", ["main"])
    opts = dataclasses.replace(
        opts,
        start=key.get("start"),
        duration=key.get("duration"),
        segment_frames=int(key.get("segment_frames", opts.segment_frames)),
        overwrite=True,  # the targets were checked by the shards
    )
    if opts.encode is None:
        opts = dataclasses.replace(opts, encode=choose_encoding(dst))
    extra = {}
    if "compare" in tracks:
        extra["compare"] = opts.compare or dst.with_name(f"{dst.stem}.compare{dst.suffix}")
    if "depth" in tracks:
        if opts.depth is None:
            raise OutputError(f"{work}: the shards also wrote a depth video: give --save-depth")
        extra["depth"] = Path(opts.depth)
    audio, merged_by_us = _merge_locked(work, dst, extra, tracks, frames, info, opts)
    if not merged_by_us:
        notes.append("another process merged the output")
    wall = time.perf_counter() - t0
    times = _frame_times(info, opts)
    return VideoResult(
        input=str(src),
        output=str(dst),
        frames=frames,
        fps=float(info.fps),
        duration=times.duration(0, frames) if times else frames / float(info.fps),
        seconds=round(wall, 3),
        frames_per_second=0.0,
        resumed_frames=frames,
        audio=audio,
        extra_outputs={k: str(v) for k, v in extra.items()},
        source=info.as_dict(),
        timing={},
        notes=notes,
    )


def _merge_locked(
    work, dst, extra, tracks, frames, info, opts, busy_ok: bool = False
) -> tuple[dict, bool]:
    """Mux under the work folder's main lock (one merger at a time); -> (audio, merged).
    busy_ok: when another process holds the lock (a shard that finished at the same time is
    merging), leave it to that one."""
    missing = _missing_segments(work, tracks, frames, opts.segment_frames)
    if missing:
        raise OutputError(
            f"{work}: {len(missing)} segment(s) not finished yet (first: {missing[0]}); run the "
            "shards that make them, then merge"
        )
    try:
        lock = WorkLock(dst, LOCK_NAME, what="merging the shards of this output")
    except WorkBusy:
        if busy_ok:
            return {}, False
        raise
    try:
        if not (lock.path / "frames.json").exists():  # merged meanwhile by another process
            with contextlib.suppress(OSError):
                os.unlink(lock.path / LOCK_NAME)
                os.rmdir(lock.path)  # only if empty
            return {}, False
        audio = _mux_all(
            lock.path, dst, extra, tracks, frames, info, opts, _frame_times(info, opts)
        )
    finally:
        lock.release()
    remove_ours(lock.path)
    return audio, True


def _jsonish(manifest: dict, key: str):
    """A manifest value as it reads back from JSON (tuples become lists, paths strings)."""
    return json.loads(json.dumps(manifest["key"][key], default=str))


def _to_array(img: torch.Tensor, bits16: bool) -> np.ndarray:
    """(1, C, H, W) float [0, 1] -> (H, W, 3) uint8 or uint16 RGB (gray replicated)."""
    scale = 65535.0 if bits16 else 255.0
    x = img[0].clamp(0, 1).mul(scale).add_(0.5).floor_()
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    x = x.permute(1, 2, 0).numpy()
    return x.astype(np.uint16 if bits16 else np.uint8)


def _match_depth(raw: np.ndarray, bits16: bool) -> np.ndarray:
    if bits16 and raw.dtype == np.uint8:
        return raw.astype(np.uint16) * 257
    if not bits16 and raw.dtype != np.uint8:
        return ((raw.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return raw


def _compare_frame(raw: np.ndarray, out: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    gap = np.full((out.shape[0], COMPARE_GAP, 3), np.iinfo(out.dtype).max, out.dtype)
    middle = [mask, gap] if mask is not None else []
    return np.concatenate([raw, gap, *middle, out], axis=1)


def _check_targets(src: Path, targets: list[Path], overwrite: bool) -> None:
    resolved = [t.resolve() for t in targets]
    if src.resolve() in resolved:
        raise OutputError(f"{src}: refusing to overwrite the input; choose another -o")
    if len(set(resolved)) != len(resolved):
        raise OutputError(f"{targets[0]}: two outputs would be written to the same file")
    for t in targets:
        if t.exists() and not overwrite:
            raise OutputError(f"{t} exists; use --overwrite to replace it")
        if t.is_dir():
            raise OutputError(f"{t} is a folder; give an output file name like clip_sharp.mp4")


class _EncoderThread:
    """Consumes restored frames from a bounded queue and writes every track's segments."""

    def __init__(self, encoders: dict[str, SegmentEncoder], bits16: bool, size: int):
        self.encoders, self.bits16 = encoders, bits16
        self.queue: queue.Queue = queue.Queue(maxsize=size)
        self.error: BaseException | None = None
        self.aborting = False
        self.wait_s = 0.0  # time the model spent blocked on a full queue (encoder too slow)
        self.thread = threading.Thread(target=self._run, name="dgn-encode", daemon=True)
        self.thread.start()

    def put(self, item) -> None:
        t0 = time.perf_counter()
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put(item, timeout=0.1)
                break
            except queue.Full:
                continue
        self.wait_s += time.perf_counter() - t0

    def _run(self) -> None:
        try:
            while (item := self.queue.get()) is not None and not self.aborting:
                t, image, raw, depth, mask = item
                out = _to_array(image, self.bits16)
                self.encoders["main"].write(t, out)
                if "compare" in self.encoders:
                    m = _to_array(mask, self.bits16) if mask is not None else None
                    cmp = _compare_frame(_match_depth(raw, self.bits16), out, m)
                    self.encoders["compare"].write(t, cmp)
                if "depth" in self.encoders:
                    self.encoders["depth"].write(t, _to_array(depth, self.bits16))
            if not self.aborting:
                for enc in self.encoders.values():
                    enc.finish()
        except BaseException as e:
            self.error = e
            with contextlib.suppress(queue.Empty):  # unblock a producer waiting on put
                while True:
                    self.queue.get_nowait()

    def close(self) -> None:
        """Finish the last segments (after all frames were put)."""
        self.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        """Stop without finishing the current segments (they are deleted)."""
        self.aborting = True
        with contextlib.suppress(queue.Empty):
            while True:
                self.queue.get_nowait()
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(None)
        self.thread.join(timeout=10)
        for enc in self.encoders.values():
            enc.abort()


def _clean_failed_work(work: Path, tracks: list[str]) -> None:
    """After a failure keep only what --resume can use: the manifest and verified segments
    with their records (and the lock file while the lock is held)."""
    keep = {
        f"{t}_{k:06d}.nut{x}"
        for t in tracks
        for k in valid_segments(work, t)
        for x in ("", ".done")
    }
    if keep:
        remove_ours(work, keep | {"manifest.json", LOCK_NAME}, remove_folder=False)
    else:
        remove_ours(work)


def deblur_video(
    engine: Engine,
    src: str | Path,
    dst: str | Path,
    opts: VideoOptions | None = None,
    progress: Progress | None = None,
    *,
    info: VideoInfo | None = None,
    notes: list[str] | None = None,
) -> VideoResult:
    """Restore every frame of `src` into `dst` (see the module docstring). Raises InputError
    for an unreadable input, OutputError for an output that exists or cannot be written;
    on any error or KeyboardInterrupt nothing is left at `dst`."""
    t_start = time.perf_counter()
    opts = opts or VideoOptions()
    src, dst = Path(src), Path(dst)
    if engine.dgn is None:
        raise InputError("deblur_video needs an engine with a DGN")
    if opts.segment_frames < 1:
        raise OutputError(f"segment frames must be >= 1, got {opts.segment_frames}")
    notes = list(notes or [])
    if info is None:
        info, notes = open_input(src, opts)
    opts = prepare_outputs(src, dst, opts, info, notes)  # the caller's options stay as given
    settings = opts.encode
    extra = {"compare": opts.compare, "depth": opts.depth}
    extra = {k: Path(v) for k, v in extra.items() if v is not None}
    if opts.start and info.duration is not None and opts.start >= info.duration:
        raise InputError(
            f"{src}: --start {opts.start:g} s is past the end of the video ({info.duration:g} s)"
        )
    if any(s.kind == "video" and "(attached pic)" not in s.details for s in info.streams):
        notes.append(f"only the first video stream (#{info.video.index}) is processed")
    times = _frame_times(info, opts)
    if info.vfr and times is None:
        notes.append(
            f"variable frame rate source without a frame list: all frames kept at the average "
            f"{float(info.fps):.3f} fps (same count and duration; frame times evened out)"
        )
    elif times is not None:
        notes.append("variable frame rate source: every frame keeps its source timestamp")

    tracks = ["main", *extra]
    shard = opts.shard
    # Refuses a symlinked/foreign work folder and a second writer (of this shard).
    lock = WorkLock(dst) if shard is None else WorkLock(dst, f"lock.{shard[0]}of{shard[1]}")
    work = lock.path
    manifest = _manifest(engine, info, opts, tracks)
    try:
        _check_targets(src, [dst, *extra.values()], opts.overwrite)  # again, under the lock
        if shard is None:
            done = _prepare_work(work, manifest, tracks, opts, notes)
        else:
            done = _prepare_shard_work(work, manifest, tracks, notes)
    except BaseException:
        lock.release()
        raise
    n_seg = opts.segment_frames
    radius = centre_index(engine.dgn.config.frames)  # frames each side of the centre
    total = expected_frames(info, opts)

    widths = {
        "main": info.width,
        "compare": _compare_width(info.width, opts),
        "depth": info.width,
    }
    encoders = {
        t: SegmentEncoder(
            t, work, widths[t], info.height, info.fps, settings, opts.segment_frames, times
        )
        for t in tracks
    }
    decoder = writer = None
    compute_s = 0.0
    control = opts.control if opts.control is not None and opts.control.active else None
    masked = _uses_mask(opts)
    # With a mask the window also holds the frames the mask is steadied over.
    window = SlidingWindow(max(radius, MASK_RADIUS) if masked else radius)
    skip = window.radius - radius  # the model's frames are the middle of the held window
    scale = 65535.0 if info.high_bit_depth else 255.0
    keep_raw = "compare" in extra
    scenes = SceneDetector(opts.scene_threshold)
    aligned = _AlignmentTally()
    parallax = engine.uses_depth and engine.video_depth == "parallax"
    sources = {"parallax": 0, "estimator": 0}  # where each frame's D_b came from (parallax)

    def to_frame(arr: np.ndarray) -> _Frame:
        """In the decoder thread: (H, W, 3) integers -> (1, 3, H, W) float32 [0, 1]."""
        x = torch.from_numpy(arr.astype(np.float32)).div_(scale).permute(2, 0, 1)[None]
        sig = signature(arr) if opts.scene_threshold > 0 else None
        return _Frame(x.contiguous(), arr if keep_raw else None, sig=sig)

    try:
        decoder = FrameDecoder(
            info,
            work,
            start=opts.start,
            duration=opts.duration,
            bits16=info.high_bit_depth,
            queue_size=opts.queue_size,
            transform=to_frame,
        )
        writer = _EncoderThread(encoders, settings.bits16, opts.queue_size)

        def process(t: int) -> None:
            nonlocal compute_s
            seg = t // n_seg
            if seg in done or not segment_in_shard(seg, shard):  # another run's: window only
                if progress:
                    progress(t + 1, total)
                return
            t0 = time.perf_counter()
            held = window.items(t)
            items = held[skip : len(held) - skip]
            centre = window[t]
            x = items[0].x if len(items) == 1 else torch.cat([it.x for it in items], dim=1)
            if parallax:  # D_b of this window's motion, so not kept on the frame
                d_in = engine.initial_depth(x)
                sources[engine.last_depth_source] += 1
                window_depths = [d_in]  # the others' estimator depths would mix two scales
            else:
                for it in held if masked else [centre] if engine.uses_depth else []:
                    if it.depth is None:
                        it.depth = engine.estimate_depth(it.x)
                d_in = centre.depth if engine.uses_depth else None
                window_depths = [it.depth for it in held]
            want_depth = "depth" in extra or masked
            image, refined = engine.restore(x, d_in, return_depth=want_depth)
            aligned.add(engine.last_run.alignment)
            guide = refined if refined is not None else d_in
            mask = None
            if control is not None:
                m_depth = None
                if masked:  # the refined depth on the window's mean estimator depth
                    m_depth = blend.temporal_depth(guide, d_in, window_depths)
                image, mask = blend.apply(centre.x, image, m_depth, control)
            if "depth" in extra and guide is None:
                guide = torch.zeros_like(image[:, :1])
            compute_s += time.perf_counter() - t0
            writer.put((t, image, centre.raw, guide, mask))
            if progress:
                progress(t + 1, total)

        for item in decoder:
            cut = scenes.push(item.sig)
            item.sig = None
            for t in window.push(item, cut):
                process(t)
        for t in window.finish():
            process(t)
        frames = window.count
        if frames == 0 and opts.start:
            raise InputError(f"{src}: no frames after --start {opts.start:g} s")
        if frames == 0:
            raise InputError(f"{src}: no video frames could be decoded (damaged or empty file)")
        if done and max(done) >= -(-frames // n_seg):
            # The earlier run's segments cover a longer clip than we decoded now.
            raise InputError(f"{src}: fewer frames than the run being resumed; use --overwrite")
        writer.close()
        notes.extend(decoder.warnings())
        decode_wait = decoder.wait_s
        decoder.close()

        missing: list[int] = []
        if shard is None:
            audio = _mux_all(work, dst, extra, tracks, frames, info, opts, times)
        else:  # the last shard to finish muxes; the others leave it to it (or to --merge)
            write_text_atomic(work / "frames.json", json.dumps({"frames": frames}))
            missing = _missing_segments(work, tracks, frames, n_seg)
            audio = {}
            if not missing:
                lock.release()
                audio, merged = _merge_locked(
                    work, dst, extra, tracks, frames, info, opts, busy_ok=True
                )
                if not merged:
                    notes.append("another shard merged the output")
    except BaseException:
        if writer is not None:
            writer.abort()
        else:
            for enc in encoders.values():
                enc.abort()
        if decoder is not None:
            decoder.close()
        if shard is None:
            _clean_failed_work(work, tracks)
        lock.release()
        raise
    if shard is None:
        remove_ours(work)
    lock.release()
    if audio.get("audio") not in (None, "copy"):
        notes.append(f"audio could not be copied into {dst.suffix}; transcoded to {audio['audio']}")
    if audio.get("subtitles") not in (None, "copy"):
        notes.append(f"subtitles converted to {audio['subtitles']} for {dst.suffix}")
    if info.subtitles and audio.get("subtitles") is None:
        notes.append(f"subtitles dropped: {dst.suffix} cannot hold them")
    wall = time.perf_counter() - t_start
    resumed = sum(min(n_seg, frames - k * n_seg) for k in done if k * n_seg < frames)
    restored = frames - resumed
    if shard is not None:
        mine = [k for k in range(-(-frames // n_seg)) if segment_in_shard(k, shard)]
        restored = sum(min(n_seg, frames - k * n_seg) for k in mine if k not in done)
        resumed = frames - restored
    return VideoResult(
        input=str(src),
        output=str(dst),
        frames=frames,
        fps=float(info.fps),
        duration=times.duration(0, frames) if times else frames / float(info.fps),
        seconds=round(wall, 3),
        frames_per_second=round(restored / wall, 3) if wall > 0 else 0.0,
        resumed_frames=resumed,
        audio=audio,
        extra_outputs={k: str(v) for k, v in extra.items()},
        source=info.as_dict(),
        timing={
            "model_s": round(compute_s, 3),
            "waiting_for_decoder_s": round(decode_wait, 3),
            "waiting_for_encoder_s": round(writer.wait_s, 3),
        },
        notes=notes,
        scene_cuts=[
            {
                "frame": c,
                "time": round(times.duration(0, c) if times else c / float(info.fps), 6),
                "score": score,
            }
            for c, score in zip(scenes.cuts, scenes.scores, strict=True)
        ],
        alignment=aligned.as_dict() if engine.align != "off" else None,
        depth_sources=sources if engine.video_depth == "parallax" else None,
        status="shard-done" if missing else "written",
        missing_segments=missing,
    )


def expected_frames(info: VideoInfo, opts: VideoOptions) -> int | None:
    """About how many frames the run will see, --start and --duration included (progress bar
    only): the scanned packet count for a whole file, else duration x fps."""
    if opts.start is None and opts.duration is None and info.packets:
        return info.packets
    if info.duration is None:
        return None
    length = max(0.0, info.duration - (opts.start or 0.0))
    if opts.duration is not None:
        length = min(length, opts.duration)
    return max(1, round(length * float(info.fps)))


def _frame_times(info: VideoInfo, opts: VideoOptions) -> FrameTimes | None:
    """The source times of the frames this run decodes (VFR sources only): the scanned list,
    cut to [start, start + duration) and shifted to start at 0."""
    if not info.vfr or not info.frame_pts or info.time_base is None:
        return None
    tb = info.time_base
    pts = [p - info.frame_pts[0] for p in info.frame_pts]
    lo = (opts.start or 0.0) / tb
    hi = lo + opts.duration / tb if opts.duration is not None else None
    chosen = [p for p in pts if p >= lo - 0.5 and (hi is None or p < hi - 0.5)]
    if not chosen:
        return None
    after = [p for p in pts if p > chosen[-1]]
    step = after[0] - chosen[-1] if after else max(1, info.last_duration)
    if hi is not None:  # the last frame lasts at most until the end of the cut
        step = max(1, min(step, round(hi - chosen[-1])))
    return FrameTimes(tb, [p - chosen[0] for p in chosen], step)


def _mux_all(work, dst, extra, tracks, frames, info, opts, times) -> dict:
    """Join each track's segments and write all outputs; all are renamed into place together
    only when every one of them was written."""
    n = opts.segment_frames
    counts = [min(n, frames - k * n) for k in range((frames + n - 1) // n)]
    if times is not None:
        durations = [times.duration(k * n, c) for k, c in enumerate(counts)]
    else:
        durations = [c / float(info.fps) for c in counts]
    targets = {"main": dst, **extra}
    result = {}
    with contextlib.ExitStack() as stack:
        for track in tracks:
            enc_segments = [work / f"{track}_{k:06d}.nut" for k in range(len(counts))]
            for seg, count in zip(enc_segments, counts, strict=True):
                found = segment_frames_if_valid(seg)
                if found != count:  # missing, damaged since it was written, or another length
                    why = "is missing or damaged" if found is None else f"has {found} frames"
                    raise OutputError(
                        f"{seg}: segment {why} (expected {count} frames); nothing was written "
                        "to the output; rerun with --resume to make it again"
                    )
            list_file = work / f"{track}.ffconcat"
            write_concat_list(list_file, enc_segments, durations)
            tmp = stack.enter_context(atomic_path(targets[track]))
            r = concat_and_mux(
                list_file,
                tmp,
                info,
                start=opts.start,
                duration=opts.duration,
                with_audio=track != "depth",
            )
            got = count_frames(tmp)
            if got != frames:  # checked before the rename: a short file never lands at dst
                raise OutputError(
                    f"{targets[track]}: the joined video has {got} frames instead of the "
                    f"source's {frames}; nothing was written; rerun with --resume"
                )
            if track == "main":
                result = r
    return result
