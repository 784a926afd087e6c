"""Which video codec each output container gets, and the encoding options checked against it,
all before the first frame is decoded.

    settings = choose_encoding(".webm", codec=None, crf=None, preset=None, pix_fmt=None)
    settings.codec   # "libvpx-vp9"
    check_encoding(settings, Path("out.webm"), width, height, fps)   # a two-frame trial encode

- The container follows the output's extension: mp4/m4v/mov/mkv -> H.264 (libx264), webm ->
  VP9 (libvpx-vp9), avi -> MPEG-4 Part 2 (mpeg4: AVI has no B-frame timestamps for H.264).
  `--codec` overrides it (aliases: h264, h265/hevc, vp9).
- Known codecs (`CODECS`) have their `--crf` range, presets and containers checked here, each
  with a message naming the option; the pixel formats come from the bundled ffmpeg itself
  (`ffmpeg -h encoder=NAME`). For mpeg4 `--crf` is the quantiser (`-q:v`, 1-31).
- `check_encoding` then encodes two black frames with the exact settings into the container,
  so whatever the table does not know (another encoder, an unusual combination) fails now,
  in one line, rather than after hours of work.
"""

from __future__ import annotations

import functools
import re
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from dgn_cli.errors import OutputError
from dgn_cli.video.ffmpeg import EncodeSettings, _tail
from dgn_cli.video.probe import ffmpeg_exe

CONTAINERS = {
    ".mp4": "MP4",
    ".m4v": "MP4",
    ".mov": "QuickTime",
    ".mkv": "Matroska",
    ".webm": "WebM",
    ".avi": "AVI",
}
DEFAULT_CODEC = {
    ".mp4": "libx264",
    ".m4v": "libx264",
    ".mov": "libx264",
    ".mkv": "libx264",
    ".webm": "libvpx-vp9",
    ".avi": "mpeg4",
}
ALIASES = {
    "h264": "libx264",
    "x264": "libx264",
    "avc": "libx264",
    "h265": "libx265",
    "x265": "libx265",
    "hevc": "libx265",
    "vp9": "libvpx-vp9",
}
X26X_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)


@dataclass(frozen=True)
class Codec:
    label: str
    containers: tuple[str, ...]
    quality: tuple[int, int]  # the valid --crf range
    default_quality: int
    presets: tuple[str, ...] = ()  # empty: the encoder has no -preset


CODECS = {
    "libx264": Codec("H.264", (".mp4", ".m4v", ".mov", ".mkv"), (0, 51), 18, X26X_PRESETS),
    "libx265": Codec("H.265", (".mp4", ".m4v", ".mov", ".mkv"), (0, 51), 20, X26X_PRESETS),
    "libvpx-vp9": Codec("VP9", (".webm", ".mkv", ".mp4"), (0, 63), 30),
    "mpeg4": Codec("MPEG-4 Part 2", (".avi", ".mkv", ".mp4", ".mov"), (1, 31), 3),
}


def container_of(path: Path) -> str:
    """The output's extension, checked: OutputError for one the tool does not write."""
    suffix = path.suffix.lower()
    if suffix not in CONTAINERS:
        raise OutputError(
            f"{path}: cannot write a {suffix or 'extensionless'} video; "
            "name the output .mp4, .mov, .mkv, .webm or .avi"
        )
    return suffix


@functools.cache
def encoder_pix_fmts(codec: str) -> tuple[str, ...] | None:
    """The pixel formats the bundled ffmpeg's `codec` encoder takes; None if it has no such
    encoder; () if ffmpeg does not list them."""
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-h", f"encoder={codec}"],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
    )
    text = proc.stdout + proc.stderr
    if "is not recognized" in text or f"Encoder {codec} " not in text:
        return None
    m = re.search(r"Supported pixel formats: (.*)", text)
    return tuple(m.group(1).split()) if m else ()


def choose_encoding(
    output: Path,
    codec: str | None = None,
    crf: int | None = None,
    preset: str | None = None,
    pix_fmt: str | None = None,
) -> EncodeSettings:
    """EncodeSettings for `output`'s container (module docstring); OutputError naming the
    option for a codec the container cannot hold, an unknown preset, a --crf out of range or
    a pixel format the encoder does not take."""
    suffix = container_of(output)
    name = ALIASES.get(codec.lower(), codec) if codec else DEFAULT_CODEC[suffix]
    known = CODECS.get(name)
    fmts = encoder_pix_fmts(name)
    if fmts is None:
        raise OutputError(
            f"--codec {codec}: the bundled ffmpeg has no such video encoder "
            f"(try {', '.join(CODECS)})"
        )
    if known and suffix not in known.containers:
        fits = [c for c, k in CODECS.items() if suffix in k.containers]
        raise OutputError(
            f"{output}: {CONTAINERS[suffix]} cannot hold {known.label} ({name}); use "
            f"--codec {' or '.join(fits)}, or an output named "
            f"{' / '.join(dict.fromkeys(k.lstrip('.') for k in known.containers))}"
        )
    if known:
        lo, hi = known.quality
        if crf is not None and not lo <= crf <= hi:
            raise OutputError(f"--crf {crf}: {name} takes {lo}..{hi} (lower = better)")
        crf = known.default_quality if crf is None else crf
        if preset is not None and not known.presets:
            raise OutputError(f"--preset {preset}: {name} has no presets; leave --preset out")
        if preset is not None and preset not in known.presets:
            raise OutputError(
                f"--preset {preset} is not a {name} preset; use one of {', '.join(known.presets)}"
            )
    pix_fmt = pix_fmt or "yuv420p"
    if fmts and pix_fmt not in fmts:
        raise OutputError(
            f"--pix-fmt {pix_fmt}: {name} does not take it; use one of {', '.join(fmts)}"
        )
    return EncodeSettings(codec=name, crf=crf, preset=preset, pix_fmt=pix_fmt)


def check_encoding(
    settings: EncodeSettings, output: Path, width: int, height: int, fps: Fraction
) -> None:
    """Encode two black frames with `settings` into `output`'s container (in a temporary
    folder): OutputError in one line if ffmpeg refuses any of it."""
    s = settings
    key = (s.codec, s.crf, s.preset, s.pix_fmt, s.color_matrix, s.color_range)
    _trial(key, container_of(output), width, height, str(fps))


@functools.lru_cache(maxsize=16)
def _trial(key: tuple, suffix: str, width: int, height: int, fps: str) -> None:
    codec, crf, preset, pix_fmt, matrix, rng = key
    settings = EncodeSettings(codec, crf, preset, pix_fmt, matrix, rng)
    pad_w, pad_h = settings.pad(width, height)
    with tempfile.TemporaryDirectory(prefix="dgn-trial-") as tmp:
        log = Path(tmp) / "trial.log"
        args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "lavfi"]
        args += ["-i", f"color=black:s={width + pad_w}x{height + pad_h}:r={fps}"]
        args += ["-frames:v", "2", *settings.output_args(), str(Path(tmp) / f"trial{suffix}")]
        with open(log, "wb") as err:
            rc = subprocess.run(args, stderr=err, timeout=120).returncode
        if rc != 0:
            preset_text = f" --preset {settings.preset}" if settings.preset else ""
            raise OutputError(
                f"ffmpeg cannot write --codec {settings.codec} --pix-fmt {settings.pix_fmt}"
                f"{preset_text} into {CONTAINERS[suffix]} ({_tail(log, 1) or f'exit {rc}'})"
            )
