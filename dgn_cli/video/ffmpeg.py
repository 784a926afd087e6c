"""ffmpeg processes for the video pipeline: a streaming decoder, segment encoders, the final mux.

All run the bundled ffmpeg (`video.probe.ffmpeg_exe()`) with argument lists (never a shell),
`-nostdin`, and their own session so that Ctrl-C reaches only Python, which then stops them
cleanly. Their stderr goes to a file (a pipe nobody reads could fill up and hang ffmpeg).

- `FrameDecoder`: rawvideo RGB frames (H, W, 3) uint8, or uint16 for >8-bit sources, read by a
  thread into a bounded queue, so decoding runs ahead of the model by `queue_size` frames (an
  optional `transform`, e.g. the conversion to a float tensor, runs in that thread too).
- `SegmentEncoder`: one ffmpeg encoder per segment of frames, writing NUT files (exact time
  bases, any codec) into the work folder; a segment is renamed to its final name only when
  its encoder exited cleanly, so finished segments can be trusted by --resume.
- `concat_and_mux`: the finished segments joined by the concat demuxer (with exact
  per-segment durations) and muxed with the source's audio and subtitle streams, copied where
  the container allows, else converted (see `mux_plans`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import queue
import re
import signal
import stat
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from dgn_cli.errors import InputError, OutputError
from dgn_cli.fsutil import describe_os_error, replace_durably, write_text_atomic
from dgn_cli.video.probe import VideoInfo, ff_path, ffmpeg_exe

_END = object()


def _popen(args: list[str], stdin=None, stdout=None, stderr_path: Path | None = None):
    err = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", *args],
            stdin=stdin,
            stdout=stdout,
            stderr=err,
            start_new_session=True,  # Ctrl-C goes to Python only; we stop ffmpeg ourselves
        )
    finally:
        if stderr_path:
            err.close()


def _stop(proc: subprocess.Popen | None) -> None:
    """Stop a child ffmpeg now (used on errors and Ctrl-C)."""
    if proc is None or proc.poll() is not None:
        return
    for pipe in (proc.stdin, proc.stdout):
        try:
            if pipe:
                pipe.close()
        except OSError:
            pass
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
    except (subprocess.TimeoutExpired, OSError):
        proc.kill()
        proc.wait()


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    # "[in#0/mov,mp4 @ 0x55...] msg" -> "msg": the prefix is noise (and looks like markup).
    return " | ".join(re.sub(r"^(\[[^\]]*\]\s*)+", "", ln.strip()) for ln in text[-lines:])


def _time(seconds: float) -> str:
    return f"{seconds:.6f}"


# ------------------------------------------------------------------------------ decoding
class FrameDecoder:
    """Iterate the decoded RGB frames of `info`'s video stream, between `start` and
    `start + duration` seconds (None = to the end). Every frame is passed through
    (`-fps_mode passthrough`): no frame is dropped or duplicated."""

    def __init__(
        self,
        info: VideoInfo,
        log_dir: Path,
        *,
        start: float | None = None,
        duration: float | None = None,
        bits16: bool = False,
        queue_size: int = 4,
        transform: Callable[[np.ndarray], object] | None = None,
    ):
        self.info = info
        self.transform = transform  # run in the decoder thread (e.g. to a float tensor)
        self.bits16 = bits16
        self.dtype = np.dtype("<u2") if bits16 else np.dtype(np.uint8)
        self.frame_bytes = info.width * info.height * 3 * self.dtype.itemsize
        self.log = log_dir / "decode.log"
        args = ["-v", "error"]
        if start:
            args += ["-ss", _time(start)]
        args += ["-i", ff_path(info.path)]
        if duration is not None:
            args += ["-t", _time(duration)]
        args += ["-map", f"0:{info.video.index}", "-fps_mode", "passthrough", "-an", "-sn"]
        args += ["-f", "rawvideo", "-pix_fmt", "rgb48le" if bits16 else "rgb24", "pipe:1"]
        self.proc = _popen(args, stdout=subprocess.PIPE, stderr_path=self.log)
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.frames = 0
        self.partial_tail = False
        self.wait_s = 0.0  # time the consumer spent waiting for frames
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dgn-decode", daemon=True)
        self.thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        h, w = self.info.height, self.info.width
        try:
            stdout = self.proc.stdout
            while not self._stop.is_set():
                buf = stdout.read(self.frame_bytes)
                if not buf:
                    break
                if len(buf) < self.frame_bytes:
                    self.partial_tail = True
                    break
                frame = np.frombuffer(buf, self.dtype).reshape(h, w, 3)
                if self.transform is not None:
                    frame = self.transform(frame)
                if not self._put(frame):
                    return
                self.frames += 1
            rc = self.proc.wait()
            if rc != 0 and not self._stop.is_set():
                raise InputError(
                    f"{self.info.path}: ffmpeg could not decode the video "
                    f"({_tail(self.log, 1) or f'exit {rc}'})"
                )
            self._put(_END)
        except BaseException as e:  # handed to the consumer, raised there
            self._put(e)

    def __iter__(self) -> Iterator:
        import time

        while True:
            t0 = time.perf_counter()
            item = self.queue.get()
            self.wait_s += time.perf_counter() - t0
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def warnings(self) -> list[str]:
        """Decoder complaints worth telling the user (a damaged or truncated stream)."""
        notes = []
        text = _tail(self.log, 2)
        if text:
            notes.append(f"the decoder reported: {text}")
        if self.partial_tail:
            notes.append("the last frame was incomplete and was skipped")
        return notes

    def close(self) -> None:
        self._stop.set()
        _stop(self.proc)
        self.thread.join(timeout=5)


# ------------------------------------------------------------------------------ encoding
@dataclass
class EncodeSettings:
    """How restored frames become a video stream."""

    codec: str = "libx264"
    crf: int | None = 18
    preset: str | None = None
    pix_fmt: str = "yuv420p"
    color_matrix: str | None = None  # the source's (e.g. bt709): RGB->YUV uses the same
    color_range: str | None = None

    def pad(self, width: int, height: int) -> tuple[int, int]:
        """Columns and rows to add so that a width x height frame fits the chroma
        subsampling of `pix_fmt` (4:2:0 needs an even width and height, 4:2:2 an even width);
        the frame's edge is repeated there (see SegmentEncoder)."""
        fmt = self.pix_fmt
        across = any(t in fmt for t in ("420", "422", "411")) or fmt in ("nv12", "nv21", "nv16")
        down = "420" in fmt or fmt in ("nv12", "nv21")
        return (width % 2 if across else 0, height % 2 if down else 0)

    @property
    def bits16(self) -> bool:
        """Feed 16-bit RGB when the output keeps more than 8 bits."""
        return any(tag in self.pix_fmt for tag in ("10", "12", "16"))

    def output_args(self, filter_file: Path | None = None, extra_filters: str = "") -> list[str]:
        """Encoder arguments; `extra_filters` (e.g. the timestamps of a VFR source) are joined
        to the colour conversion and, being long, passed through `filter_file`."""
        args, filters = [], []
        if self.color_matrix in ("bt709", "bt470bg", "smpte170m", "bt2020nc"):
            matrix = {"bt2020nc": "bt2020"}.get(self.color_matrix, self.color_matrix)
            rng = self.color_range or "tv"
            filters.append(f"scale=out_color_matrix={matrix}:out_range={rng}")
            args += ["-colorspace", self.color_matrix, "-color_range", rng]
        if extra_filters:
            filters.append(extra_filters)
        if filters and filter_file is not None:
            filter_file.write_text(",".join(filters))
            # passthrough: no frame dropped or duplicated to fit a nominal rate; the encoder
            # keeps the filter's (the source's) time base instead of 1/rate
            args += ["-/filter:v", os.path.abspath(filter_file), "-fps_mode", "passthrough"]
            args += ["-enc_time_base:v", "filter"]
        elif filters:
            args += ["-vf", ",".join(filters)]
        args += ["-c:v", self.codec]
        if self.crf is not None and self.codec == "mpeg4":
            args += ["-q:v", str(self.crf)]  # MPEG-4 Part 2 has no CRF: the quantiser
        elif self.crf is not None:
            args += ["-crf", str(self.crf)]
            if self.codec.startswith("libvpx"):
                args += ["-b:v", "0"]  # constant-quality mode in libvpx
        if self.preset:
            args += ["-preset", self.preset]
        return [*args, "-pix_fmt", self.pix_fmt]


@dataclass
class FrameTimes:
    """Presentation times of a variable-frame-rate source, in ticks of `tb` seconds, relative to
    the first frame processed (from `video.probe.scan`); frames past the list (should the
    decoder return more than the container listed) continue at `step` ticks apart."""

    tb: Fraction
    pts: list[int]
    step: int  # ticks between frames beyond the list, and after the last frame

    def ticks(self, i: int) -> int:
        if i < len(self.pts):
            return self.pts[i]
        last = self.pts[-1] if self.pts else -self.step
        return last + (i - len(self.pts) + 1) * self.step

    def setpts(self, first: int, count: int) -> str:
        """A setpts filter giving frames first..first+count-1 their times (relative to the
        segment's first frame): a balanced tree of if(lt(N, m), ...) so the expression nests
        only log2(count) deep."""
        base = self.ticks(first)
        values = [self.ticks(first + i) - base for i in range(count)]

        def tree(lo: int, hi: int) -> str:
            if hi - lo == 1:
                return str(values[lo])
            mid = (lo + hi) // 2
            return f"if(lt(N,{mid}),{tree(lo, mid)},{tree(mid, hi)})"

        tb = f"{self.tb.numerator}/{self.tb.denominator}"
        return f"settb={tb},setpts='{tree(0, count)}'"

    def duration(self, first: int, count: int) -> float:
        """Seconds from frame `first` to the end of frame first+count-1."""
        return float((self.ticks(first + count) - self.ticks(first)) * self.tb)


class SegmentEncoder:
    """Encode frames into `<work>/<name>_<k>.nut` segments of `segment_frames` frames each.

    `write(index, frame)` takes (H, W, 3) uint8/uint16 RGB; a segment is finished (encoder
    closed, file renamed from its `.part` name) after its last frame or at `close()`."""

    def __init__(
        self,
        name: str,
        work: Path,
        width: int,
        height: int,
        fps: Fraction,
        settings: EncodeSettings,
        segment_frames: int,
        times: FrameTimes | None = None,
    ):
        self.times = times
        self.name, self.work = name, work
        self.width, self.height, self.fps = width, height, fps
        self.settings, self.segment_frames = settings, segment_frames
        self.proc: subprocess.Popen | None = None
        self.part: Path | None = None
        self.segment = -1
        self.in_segment = 0
        self.pad_w, self.pad_h = settings.pad(width, height)  # odd sizes in 4:2:0

    def segment_path(self, k: int) -> Path:
        return self.work / f"{self.name}_{k:06d}.nut"

    def write(self, index: int, frame: np.ndarray) -> None:
        k = index // self.segment_frames
        if k != self.segment:
            self.finish()
            self._start(k)
        assert self.proc is not None and self.proc.stdin is not None
        if self.pad_w or self.pad_h:
            frame = np.pad(frame, ((0, self.pad_h), (0, self.pad_w), (0, 0)), mode="edge")
        try:
            self.proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except (BrokenPipeError, OSError):
            self._failed()
        self.in_segment += 1

    def _start(self, k: int) -> None:
        self.segment, self.in_segment = k, 0
        self.part = self.work / f"{self.name}_{k:06d}.part.nut"
        pix_in = "rgb48le" if self.settings.bits16 else "rgb24"
        args = ["-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", pix_in]
        size = f"{self.width + self.pad_w}x{self.height + self.pad_h}"
        args += ["-s", size, "-framerate", str(self.fps), "-i", "pipe:0"]
        if self.times is not None:  # VFR: each frame gets its source time back
            first = k * self.segment_frames
            setpts = self.times.setpts(first, self.segment_frames)
            out = self.settings.output_args(self.work / f"{self.name}.filter", setpts)
        else:
            out = self.settings.output_args()
        args += [*out, "-f", "nut", ff_path(self.part)]
        self.proc = _popen(args, stdin=subprocess.PIPE, stderr_path=self._log())

    def _log(self) -> Path:
        return self.work / f"{self.name}_encode.log"

    def _failed(self) -> None:
        rc = self.proc.wait() if self.proc else None
        disk = disk_error(rc)
        if disk:  # ffmpeg exits with -errno: 228 is "no space left", not an encoder problem
            raise OutputError(f"{self.work}: cannot write the {self.name} video ({disk})")
        raise OutputError(
            f"ffmpeg could not encode the {self.name} video with --codec {self.settings.codec} "
            f"--pix-fmt {self.settings.pix_fmt} ({_tail(self._log()) or f'exit {rc}'})"
        )

    def finish(self) -> None:
        """Close the current segment's encoder and publish its file."""
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        rc = self.proc.wait()
        if rc != 0:
            self._failed()
        # Durable before it counts: the file is fsynced and renamed, then its record (frame
        # count, size, sha256) is written; --resume trusts a segment only if both agree.
        final = self.segment_path(self.segment)
        replace_durably(self.part, final)
        write_segment_record(final, self.in_segment)
        self.proc, self.part = None, None

    def abort(self) -> None:
        """Stop the encoder and delete the unfinished segment (finished ones stay)."""
        _stop(self.proc)
        self.proc = None
        if self.part is not None:
            self.part.unlink(missing_ok=True)
            self.part = None


def disk_error(rc: int | None) -> str | None:
    """ffmpeg's exit status is -errno & 0xFF: the words for the disk errors among them."""
    if rc is None or rc <= 0:
        return None
    code = 256 - rc
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EEXIST):
        return describe_os_error(OSError(code, os.strerror(code)))
    return None


SEGMENT = re.compile(r"^(?P<track>[a-z]+)_(?P<k>\d{6})\.nut$")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def record_path(segment: Path) -> Path:
    return segment.with_name(segment.name + ".done")


def write_segment_record(segment: Path, frames: int) -> None:
    """Write `<segment>.done`: the frames, size and sha256 of a finished segment."""
    record = {"frames": frames, "size": segment.stat().st_size, "sha256": _sha256(segment)}
    write_text_atomic(record_path(segment), json.dumps(record) + "\n")


def segment_frames_if_valid(segment: Path) -> int | None:
    """The frame count of a finished segment whose file matches its record (size and sha256),
    else None: a 0-byte, truncated or altered segment, or one without a record, is not kept."""
    try:
        record = json.loads(record_path(segment).read_text())
        st = os.lstat(segment)
        if not stat.S_ISREG(st.st_mode) or st.st_size != record["size"]:
            return None
        if _sha256(segment) != record["sha256"]:
            return None
        frames = int(record["frames"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return frames if frames > 0 else None


def valid_segments(work: Path, name: str) -> dict[int, int]:
    """{segment index: frames} of `name`'s verified segments in `work`."""
    found = {}
    with contextlib.suppress(OSError):
        for p in work.iterdir():
            m = SEGMENT.match(p.name)
            if m and m.group("track") == name:
                frames = segment_frames_if_valid(p)
                if frames is not None:
                    found[int(m.group("k"))] = frames
    return found


def finished_segments(work: Path, name: str) -> int:
    """How many verified segments `name_000000.nut`, `name_000001.nut`, ... there are, counted
    from 0 without a gap."""
    done = valid_segments(work, name)
    k = 0
    while k in done:
        k += 1
    return k


# ------------------------------------------------------------------------------ muxing
# Where a stream cannot be copied into the output container: what to convert it to.
_AUDIO_FALLBACK = {".webm": "libopus", ".ogg": "libvorbis", ".avi": "libmp3lame"}
_SUBTITLE_FALLBACK = {
    ".mp4": "mov_text",
    ".m4v": "mov_text",
    ".mov": "mov_text",
    ".mkv": "srt",
    ".webm": "webvtt",
}


@dataclass
class MuxPlan:
    audio: str  # copy | <encoder> | none
    subtitles: str  # copy | <encoder> | none


def mux_plans(info: VideoInfo, suffix: str, with_audio: bool) -> list[MuxPlan]:
    """The attempts, best first: copy everything; convert subtitles; drop subtitles; then the
    same with audio transcoded (AAC, or the container's usual codec)."""
    audio = ["copy", _AUDIO_FALLBACK.get(suffix, "aac")] if with_audio and info.audio else ["none"]
    subs = ["none"]
    if with_audio and info.subtitles:
        convert = _SUBTITLE_FALLBACK.get(suffix)
        subs = ["copy", *([convert] if convert else []), "none"]
    return [MuxPlan(a, s) for a in audio for s in subs]


def write_concat_list(path: Path, segments: list[Path], durations: list[float]) -> None:
    """An ffconcat list with exact per-segment durations (cumulative microseconds, so the
    rounding never drifts): NUT files report their duration only roughly."""
    lines = ["ffconcat version 1.0"]
    edge = 0.0
    for seg, d in zip(segments, durations, strict=True):
        lo, edge = round(edge * 1e6), edge + d
        lines += [f"file '{seg.name}'", f"duration {(round(edge * 1e6) - lo)}us"]
    path.write_text("\n".join(lines) + "\n")


def concat_and_mux(
    list_file: Path,
    target: Path,
    info: VideoInfo,
    *,
    start: float | None,
    duration: float | None,
    with_audio: bool,
) -> dict:
    """Join the segments of `list_file` into `target` (whose name picks the container) with the
    source's audio/subtitles; returns what happened to them (for the log and --json)."""
    suffix = target.suffix.lower()
    errors = []
    for plan in mux_plans(info, suffix, with_audio):
        args = ["-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", ff_path(list_file)]
        has_source = plan.audio != "none" or plan.subtitles != "none"
        if has_source:
            if start:
                args += ["-ss", _time(start)]
            if duration is not None:
                args += ["-t", _time(duration)]
            args += ["-i", ff_path(info.path)]
        args += ["-map", "0:v:0"]
        if plan.audio != "none":
            args += ["-map", "1:a", "-c:a", plan.audio]
        if plan.subtitles != "none":
            args += ["-map", "1:s", "-c:s", plan.subtitles]
        # Global tags (title, dates) come from the source; none from the temporary segments.
        args += ["-c:v", "copy", "-map_metadata", "1" if has_source else "-1"]
        if suffix in (".mp4", ".m4v", ".mov"):
            args += ["-movflags", "+faststart"]
        if suffix == ".avi" and not info.vfr:
            # AVI stores one rate for the stream: without it the copied NUT time base (e.g.
            # 1/600) becomes the frame rate and the frame count; and AVI has no timestamps to
            # shift, so the audio's encoder delay must not push the video one frame late
            args += ["-r", str(info.fps), "-avoid_negative_ts", "disabled"]
        with tempfile.NamedTemporaryFile(suffix=".log", dir=list_file.parent, delete=False) as f:
            log = Path(f.name)
        proc = _popen([*args, ff_path(target)], stderr_path=log)
        rc = proc.wait()
        tail = _tail(log, 2)
        log.unlink(missing_ok=True)
        if rc == 0:
            return {
                "audio": plan.audio if plan.audio != "none" else None,
                "subtitles": plan.subtitles if plan.subtitles != "none" else None,
                "audio_streams": [s.as_dict() for s in info.audio] if plan.audio != "none" else [],
                "subtitle_streams": (
                    [s.as_dict() for s in info.subtitles] if plan.subtitles != "none" else []
                ),
                "mux_errors": errors,
            }
        errors.append(f"audio {plan.audio}, subtitles {plan.subtitles}: {tail}")
        target.unlink(missing_ok=True)
    raise OutputError(f"{target}: ffmpeg could not write the output ({errors[-1]})")
