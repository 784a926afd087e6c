"""What is inside a video file, read from the bundled ffmpeg's `ffmpeg -i` report.

imageio-ffmpeg ships ffmpeg but no ffprobe, so `probe(path)` runs `ffmpeg -hide_banner -i PATH`
(which lists the streams and exits) and parses its stderr:

    info = probe("clip.mp4")
    info.width, info.height, info.fps, info.duration, info.frames_estimate
    info.audio   # [StreamInfo(index=1, kind="audio", codec="aac", ...)]

Sizes are the displayed size: ffmpeg rotates frames by the container's display matrix when it
decodes them, so a portrait phone clip stored as 1920x1080 with rotation -90 has width 1080.
A source is flagged variable-frame-rate (`vfr`) when its average rate (`fps`) and the rate
ffmpeg guesses from its timestamps (`tbr`) disagree.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from dgn_cli.errors import InputError


def ff_path(path: str | Path) -> str:
    """A local path as ffmpeg must see it: `file:` + the absolute path, so that a file named
    `concat:a.mp4|b.mp4` or `http:x` is never read as one of ffmpeg's protocols."""
    return "file:" + os.path.abspath(path)


def ffmpeg_exe() -> str:
    """The ffmpeg binary bundled with imageio-ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass
class StreamInfo:
    """One stream of the input (`index` is ffmpeg's absolute stream index)."""

    index: int
    kind: str  # video | audio | subtitle | data | attachment
    codec: str
    language: str | None = None
    details: str = ""  # the rest of ffmpeg's line (sample rate, layout, ...)

    def as_dict(self) -> dict:
        return {"index": self.index, "kind": self.kind, "codec": self.codec, "lang": self.language}


@dataclass
class VideoInfo:
    """The chosen video stream (the first one that is not a cover picture) and the rest."""

    path: Path
    container: str
    video: StreamInfo
    width: int
    height: int
    fps: Fraction  # average frame rate
    tbr: Fraction | None
    pix_fmt: str
    color_matrix: str | None  # e.g. "bt709"; None when the file does not say
    color_range: str | None  # tv | pc
    duration: float | None  # seconds, container duration
    rotation: float = 0.0
    packets: int | None = None  # video packets counted by `scan` (= frames for most codecs)
    # VFR sources only (from `scan`): every frame's time in ticks of time_base, sorted
    time_base: Fraction | None = None
    frame_pts: list[int] | None = None
    last_duration: int = 0  # ticks of the last frame
    streams: list[StreamInfo] = field(default_factory=list)

    @property
    def audio(self) -> list[StreamInfo]:
        return [s for s in self.streams if s.kind == "audio"]

    @property
    def subtitles(self) -> list[StreamInfo]:
        return [s for s in self.streams if s.kind == "subtitle"]

    @property
    def vfr(self) -> bool:
        return self.tbr is not None and abs(float(self.tbr) - float(self.fps)) > 0.01 * float(
            self.fps
        )

    @property
    def high_bit_depth(self) -> bool:
        """True for 9-16 bit sources (decoded as 16-bit RGB so nothing is lost)."""
        return bool(re.search(r"(9|10|12|14|16)(le|be)$", self.pix_fmt)) or "48" in self.pix_fmt

    @property
    def frames_estimate(self) -> int | None:
        """The packet count from `scan`, else duration x fps (for the progress bar only; the
        pipeline never relies on it)."""
        if self.packets:
            return self.packets
        if self.duration is None:
            return None
        return max(1, round(self.duration * float(self.fps)))

    def as_dict(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "fps": float(self.fps),
            "vfr": self.vfr,
            "duration": self.duration,
            "codec": self.video.codec,
            "pix_fmt": self.pix_fmt,
            "audio": [s.as_dict() for s in self.audio],
            "subtitles": [s.as_dict() for s in self.subtitles],
        }


_STREAM = re.compile(
    r"^\s*Stream #0:(?P<index>\d+)(?:\[[^\]]*\])?(?:\((?P<lang>[^)]*)\))?: "
    r"(?P<kind>Video|Audio|Subtitle|Data|Attachment): (?P<rest>.*)$"
)
_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_INPUT = re.compile(r"^Input #0, (?P<fmt>[^,]+(?:,[^,\s]+)*), from")
_ROTATION = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees")


def _split_top(text: str) -> list[str]:
    """Split on ', ' outside parentheses/brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "([" and 1 or (ch in ")]" and -1 or 0)
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def _rate(text: str, unit: str) -> Fraction | None:
    m = re.search(rf"(\d+(?:\.\d+)?)(k?) {unit}\b", text)
    if not m:
        return None
    value = Fraction(m.group(1)) * (1000 if m.group(2) else 1)
    # ffmpeg prints 29.97 for 30000/1001, 23.98 for 24000/1001, 59.94 for 60000/1001.
    for ntsc in (24, 30, 48, 60, 120):
        exact = Fraction(ntsc * 1000, 1001)
        if abs(float(value) - float(exact)) < 0.006:
            return exact
    return value


def parse_report(text: str, path: Path) -> VideoInfo:
    """Parse `ffmpeg -i` stderr (see the module docstring); raise InputError if no video."""
    container = ""
    duration = None
    streams: list[StreamInfo] = []
    video_lines: dict[int, str] = {}
    rotation: dict[int, float] = {}
    last_stream = None
    for line in text.splitlines():
        if m := _INPUT.match(line):
            container = m.group("fmt")
        elif m := _DURATION.search(line):
            h, mi, s = m.groups()
            duration = int(h) * 3600 + int(mi) * 60 + float(s)
        elif m := _STREAM.match(line):
            kind = m.group("kind").lower()
            rest = m.group("rest")
            codec = rest.split(" ", 1)[0].rstrip(",")
            lang = m.group("lang") if m.group("lang") not in (None, "und") else None
            s = StreamInfo(int(m.group("index")), kind, codec, lang, rest)
            streams.append(s)
            last_stream = s
            if kind == "video" and "(attached pic)" not in rest:
                video_lines[s.index] = rest
        elif last_stream is not None and (m := _ROTATION.search(line)):
            rotation[last_stream.index] = float(m.group(1))
    if not video_lines:
        kinds = ", ".join(s.kind for s in streams) or "none"
        raise InputError(
            f"{path}: no video stream (streams: {kinds}); give a video file to deblur-video"
        )
    index = min(video_lines)
    parts = _split_top(video_lines[index])
    video = next(s for s in streams if s.index == index)
    pix = parts[1] if len(parts) > 1 else "unknown"
    pix_fmt = pix.split("(", 1)[0].strip()
    paren = pix[pix.find("(") + 1 : -1].split(", ") if "(" in pix else []
    color_range = next((p for p in paren if p in ("tv", "pc")), None)
    matrix = next((p for p in paren if p.startswith(("bt", "smpte", "fcc"))), None)
    size = re.search(r"(?<![\dx])(\d{1,5})x(\d{1,5})(?![\dx])", video_lines[index])
    if not size:
        raise InputError(f"{path}: could not read the video size from ffmpeg's report")
    width, height = int(size.group(1)), int(size.group(2))
    rot = rotation.get(index, 0.0)
    if round(abs(rot)) % 180 == 90:
        width, height = height, width
    fps = _rate(video_lines[index], "fps")
    tbr = _rate(video_lines[index], "tbr")
    fps = fps or tbr
    if not fps:
        raise InputError(f"{path}: ffmpeg reports no frame rate for the video stream")
    others = [s for s in streams if s.index != index]
    return VideoInfo(
        path=path,
        container=container,
        video=video,
        width=width,
        height=height,
        fps=fps,
        tbr=tbr,
        pix_fmt=pix_fmt,
        color_matrix=matrix,
        color_range=color_range,
        duration=duration,
        rotation=rot,
        streams=others,
    )


PROBE_TIMEOUT_S = 120


def scan_timeout(path: Path) -> float:
    """Seconds `scan` may take: generous for the file's size (reading at >= 10 MB/s)."""
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    return 300.0 + size / 10e6


def probe(path: str | Path) -> VideoInfo:
    """Describe `path`'s streams (module docstring). Raises InputError for a missing file,
    a file ffmpeg cannot open (not a video, truncated header) or one without a video stream."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        proc = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", ff_path(path)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise InputError(
            f"{path}: ffmpeg needed more than {PROBE_TIMEOUT_S} s to read its header; "
            "not a readable video"
        ) from None
    text = proc.stderr
    if "Input #0" not in text:
        reason = _last_error(text) or "ffmpeg cannot open it"
        raise InputError(f"{path}: not a readable video ({reason})")
    return parse_report(text, path)


def _last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error opening input" in ln or "Invalid data" in ln or "moov atom" in ln:
            return re.sub(r"^\[[^\]]*\]\s*", "", ln).rstrip(".")
    return lines[-1] if lines else ""


_TRUNCATED = ("partial file", "truncat", "invalid data", "error while", "corrupt")


def scan(info: VideoInfo) -> list[str]:
    """Read the video stream's packets once without decoding (`-c copy`, about as fast as
    reading the file): sets `info.packets` for the progress bar, and for a variable-frame-rate
    source `info.frame_pts` (every frame's time, sorted, in `info.time_base` ticks) from a
    `framecrc` listing; returns the problems found (a truncated or damaged container), so they
    are known before hours of work."""
    out = ["-f", "framecrc", "pipe:1"] if info.vfr else ["-f", "null", "-"]
    limit = scan_timeout(info.path)
    try:
        proc = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-stats"]
            + ["-i", ff_path(info.path), "-map", f"0:{info.video.index}", "-c", "copy", *out],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=limit,
        )
    except subprocess.TimeoutExpired:
        raise InputError(
            f"{info.path}: ffmpeg needed more than {limit:.0f} s to read the video stream; "
            "the file is damaged or on a very slow disk"
        ) from None
    text = proc.stderr
    problems = [
        re.sub(r"^(\[[^\]]*\]\s*)+", "", ln.strip())
        for ln in text.replace("\r", "\n").splitlines()
        if any(k in ln.lower() for k in _TRUNCATED)
    ]
    counts = re.findall(r"frame=\s*(\d+)", text)
    info.packets = int(counts[-1]) if counts else None
    if info.vfr:
        _read_framecrc(info, proc.stdout)
    if proc.returncode != 0 and not problems:
        problems.append(_last_error(text) or f"ffmpeg exit {proc.returncode}")
    return problems


def _read_framecrc(info: VideoInfo, listing: str) -> None:
    """framecrc lines: 'stream, dts, pts, duration, size, crc'; '#tb 0: 1/12288' gives units."""
    tb = re.search(r"^#tb 0: (\d+)/(\d+)", listing, re.M)
    if not tb:
        return
    pts, durations = [], []
    for line in listing.splitlines():
        if line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 4 and parts[2].lstrip("-").isdigit():
            pts.append(int(parts[2]))
            durations.append(int(parts[3]) if parts[3].isdigit() else 0)
    info.time_base = Fraction(int(tb.group(1)), int(tb.group(2)))
    info.frame_pts = sorted(pts)
    info.last_duration = max(durations[-1], 1) if durations else 1


def count_frames(path: str | Path) -> int | None:
    """The video packets (= frames for the codecs we write) of `path`'s first video stream, read
    without decoding; None when ffmpeg cannot read the file."""
    path = Path(path)
    try:
        proc = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-stats"]
            + ["-i", ff_path(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=scan_timeout(path),
        )
    except subprocess.TimeoutExpired:
        return None
    counts = re.findall(r"frame=\s*(\d+)", proc.stderr)
    if proc.returncode != 0 or not counts:
        return None
    return int(counts[-1])
