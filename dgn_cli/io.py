"""Image reading and writing that loses nothing the output format can hold.

    pic = read_image("in.jpg")          # Picture: RGB pixels, alpha, gray flag, EXIF, ICC
    x = to_tensor(pic.rgb)              # (1, 3, H, W) float32 in [0, 1]
    rgb = from_tensor(y, pic.rgb.dtype) # back to (H, W, 3) uint8 / uint16 / float32
    notes = write_image("out.png", rgb, alpha=pic.alpha, gray=pic.gray, exif=pic.exif,
                        icc=pic.icc)    # atomic; `notes` says what the format could not keep

What is kept:
- Bit depth: uint8 and uint16 stay as they are where the format stores them (PNG and TIFF
  hold 16 bits; JPEG, WebP and BMP hold 8, so 16-bit input written there becomes 8-bit and a
  note says so). float32 TIFFs are read as floats in [0, 1] and written back as float32 TIFF
  (as 16-bit PNG, 8-bit elsewhere).
- Grayscale stays grayscale: the pixels are replicated to RGB for the network and the output
  is converted back with the mean of the three channels (the network's channels differ only
  slightly on a gray input, so the mean is the neutral choice).
- Alpha is passed through untouched (same values, same bit depth); JPEG has no alpha, so it is
  dropped there with a note. 8-bit gray + alpha is written as a PNG "LA" image; other gray +
  alpha outputs are written as RGBA with equal RGB channels.
- EXIF orientation is applied on reading (OpenCV's IMREAD_UNCHANGED, needed for 16-bit and
  alpha, ignores it), and the written EXIF has Orientation = 1 so viewers do not rotate again.
- EXIF and the ICC profile are written to JPEG, PNG and WebP (OpenCV's imencodeWithMetadata)
  and to 8-bit TIFF (Pillow). 16-bit/float TIFF and BMP outputs cannot carry them here: a note
  says so.

Decoding uses OpenCV (16-bit, alpha, every listed format); Pillow reads the EXIF/ICC and is
the fall-back decoder for files OpenCV refuses (e.g. TIFFs whose metadata trips OpenCV 5).
Pillow is a declared dependency of imageio (`Requires: numpy, pillow` in imageio >= 2.31),
which dgn pins, so it is always installed. JPEGs are also fully decoded by Pillow, because
libjpeg silently fills a truncated JPEG with gray where Pillow reports the truncation.
Conversions between arrays and tensors work in blocks of rows, so a huge image never has a
second full-resolution float copy.
"""

from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dgn_cli.errors import InputError, OutputError
from dgn_cli.fsutil import write_bytes_atomic

# OpenCV logs decoder complaints straight to stderr; the CLI reports bad files itself.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")
FORMATS = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "tif": ".tif", "tiff": ".tiff",
           "webp": ".webp", "bmp": ".bmp"}  # fmt: skip
BITS16 = {".png", ".tif", ".tiff"}
FLOAT = {".tif", ".tiff"}
NO_ALPHA = {".jpg", ".jpeg"}
METADATA_CV = {".jpg", ".jpeg", ".png", ".webp"}
EXIF_HEADER = b"Exif\x00\x00"
ORIENTATION = 0x0112
DEFAULT_QUALITY = 95
ROWS = 256  # rows per block in array <-> tensor conversions
DEFAULT_MAX_PIXELS = 250_000_000  # an image's declared size is checked before decoding

# EXIF orientation -> how to turn the stored pixels upright (numpy views, no copy).
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


@dataclass
class Picture:
    """A decoded image, upright: RGB pixels (H, W, 3) uint8 | uint16 | float32, alpha (H, W)
    of the same dtype or None, `gray` if the source had one colour channel, EXIF (raw TIFF
    bytes, Orientation reset to 1) and ICC profile bytes or None."""

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    gray: bool = False
    exif: bytes | None = None
    icc: bytes | None = None
    orientation: int = 1  # the EXIF orientation that was applied
    notes: list[str] = field(default_factory=list)  # e.g. "animated: first frame only"

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    @property
    def bits(self) -> int:
        return {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(self.rgb.dtype, 32)


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTS


# --------------------------------------------------------------------------------- reading
def read_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Picture:
    """Decode an image file upright with its metadata; `InputError` naming it if it cannot.

    The size the file declares is checked against `max_pixels` (None = no limit) before
    anything is decoded: a small file can claim 100000 x 100000 pixels. An animated file gives
    its first frame, and `notes` says so."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    if not data:
        raise InputError(f"{path}: empty file")
    notes = []
    declared = declared_size(data)
    if declared is not None:
        (w, h), frames = declared
        check_pixels(path, w, h, max_pixels)
        if frames > 1:
            notes.append(f"animated image: only the first of its {frames} frames is used")
    exif, icc, mode, orientation, pil_error = _pillow_metadata(data)
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:  # OpenCV's own limits (e.g. CV_IO_MAX_IMAGE_PIXELS)
        reason = (str(e).strip().splitlines() or ["OpenCV error"])[-1][:200]
        raise InputError(f"{path}: cannot decode ({reason})") from None
    if arr is not None and data[:2] == b"\xff\xd8" and pil_error:
        arr = None  # a JPEG that Pillow finds truncated/corrupt: do not trust the gray fill
    if arr is None:
        arr = _pillow_decode(path, data, pil_error)
    else:
        arr = _bgr_to_rgb(arr)
    if arr.dtype not in (np.uint8, np.uint16, np.float32):
        raise InputError(f"{path}: {arr.dtype} samples are not supported (use 8/16-bit or float)")
    if orientation in _UPRIGHT:
        arr = _UPRIGHT[orientation](arr)
    gray = arr.ndim == 2 or mode in ("L", "LA", "La", "1", "I", "F") or mode.startswith("I;16")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    alpha = np.ascontiguousarray(arr[:, :, 3]) if arr.shape[2] == 4 else None
    if arr.shape[2] == 2:  # gray + alpha from Pillow
        alpha = np.ascontiguousarray(arr[:, :, 1])
    colour = arr[:, :, :1] if gray or arr.shape[2] < 3 else arr[:, :, :3]
    rgb = np.ascontiguousarray(np.broadcast_to(colour, (*arr.shape[:2], 3)))
    if rgb.dtype == np.float32:
        rgb = np.nan_to_num(rgb).clip(0, 1)
    upright = orientation if orientation in _UPRIGHT else 1
    return Picture(rgb, alpha, gray, exif, icc, upright, notes)


_PIL_LIMIT = threading.Lock()


def declared_size(data: bytes) -> tuple[tuple[int, int], int] | None:
    """((width, height), frames) from the file's header, without decoding the pixels; None if
    Pillow does not know the format. Pillow's own bomb check is lifted for this header read
    only: `check_pixels` is the limit, with a message that says how to raise it."""
    with _PIL_LIMIT:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with Image.open(io.BytesIO(data)) as im:
                return im.size, int(getattr(im, "n_frames", 1) or 1)
        except Exception:  # unknown or broken header: the decoders report it
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def check_pixels(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    """InputError naming `path` when width x height is over `max_pixels` (or not positive)."""
    if width < 1 or height < 1:
        raise InputError(f"{path}: the file declares an empty image ({width}x{height})")
    n = width * height
    if max_pixels is not None and n > max_pixels:
        gb = n * 3 * 4 / 1e9  # at least one float32 RGB copy
        raise InputError(
            f"{path}: {width}x{height} is {n / 1e6:.0f} megapixels, more than the limit of "
            f"{max_pixels / 1e6:.0f} (it needs over {gb:.0f} GB of memory); pass "
            f"--max-pixels {n} to allow it"
        )


def _pillow_metadata(data: bytes) -> tuple[bytes | None, bytes | None, str, int, str]:
    """(EXIF with Orientation=1, ICC, Pillow mode, orientation, Pillow's error or '')."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            mode = im.mode
            icc = im.info.get("icc_profile") or None
            exif_obj = im.getexif()
            orientation = int(exif_obj.get(ORIENTATION, 1) or 1)
            if mode == "CMYK":
                icc = None  # a CMYK profile would mislabel the RGB output
            exif = None
            # A TIFF's "EXIF" is its whole tag directory (strip offsets...): not carried over.
            if len(exif_obj) and im.format != "TIFF":
                if ORIENTATION in exif_obj:
                    exif_obj[ORIENTATION] = 1
                exif = exif_obj.tobytes()
                exif = exif[len(EXIF_HEADER) :] if exif.startswith(EXIF_HEADER) else exif
            error = ""
            if im.format == "JPEG":
                try:
                    im.load()
                except Exception as e:  # truncated or corrupt entropy data
                    error = str(e) or type(e).__name__
            return exif, icc, mode, orientation, error
    except Image.DecompressionBombError:
        return None, None, "", 1, ""  # huge but legitimate: OpenCV decodes it
    except UnidentifiedImageError:
        return None, None, "", 1, "unknown image format"
    except (OSError, ValueError, SyntaxError) as e:
        return None, None, "", 1, str(e) or type(e).__name__


def _pillow_decode(path: Path, data: bytes, pil_error: str) -> np.ndarray:
    """Fall-back decoder -> (H, W[, C]) RGB(A) array; InputError if Pillow fails too."""
    why = pil_error or "not a supported image"
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode.startswith("I;16"):
                return np.asarray(im, dtype=np.uint16)
            elif im.mode == "F":
                return np.asarray(im, dtype=np.float32)
            elif im.mode not in ("L", "LA", "RGB", "RGBA"):
                im = im.convert("RGBA" if "A" in im.mode else "RGB")
            return np.asarray(im)
    except UnidentifiedImageError:
        pass
    except Exception as e:
        why = pil_error or str(e) or type(e).__name__
    raise InputError(f"{path}: cannot decode: corrupt or not a supported image ({why})")


def _bgr_to_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] >= 3:
        order = [2, 1, 0] + ([3] if arr.shape[2] == 4 else [])
        return arr[:, :, order]
    return arr


# --------------------------------------------------------------------------------- tensors
def _scale(dtype: np.dtype) -> float:
    return {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(np.dtype(dtype), 1.0)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8/uint16/float32 -> (1, 3, H, W) float32 in [0, 1], block by block."""
    h, w = rgb.shape[:2]
    scale = _scale(rgb.dtype)
    out = torch.empty(1, 3, h, w)
    for r in range(0, h, ROWS):
        block = rgb[r : r + ROWS]
        if block.dtype == np.uint16:  # torch has no uint16 arithmetic on every build
            block = block.astype(np.int32)
        elif not block.flags.writeable:  # torch warns on (and cannot share) read-only memory
            block = block.copy()
        t = torch.from_numpy(np.ascontiguousarray(block)).permute(2, 0, 1).float()
        out[0, :, r : r + ROWS] = t.div(scale) if scale != 1 else t.clamp(0, 1)
    return out


def from_tensor(t: torch.Tensor, dtype: np.dtype, gray: bool = False) -> np.ndarray:
    """(1, C, H, W) float in [0, 1] -> (H, W, C) array of `dtype` (rounded, clipped), or
    (H, W) when `gray` (mean of the channels). Block by block."""
    _, c, h, w = t.shape
    dtype = np.dtype(dtype)
    scale = _scale(dtype)
    out = np.empty((h, w) if gray else (h, w, c), dtype=dtype)
    for r in range(0, h, ROWS):
        block = t[0, :, r : r + ROWS].float()
        if gray:
            block = block.mean(dim=0, keepdim=True)
        block = block.clamp(0, 1)
        if scale != 1:
            block = block.mul_(scale).round_()
        arr = block.permute(1, 2, 0).numpy().astype(dtype)
        out[r : r + ROWS] = arr[:, :, 0] if gray else arr
    return out


# --------------------------------------------------------------------------------- writing
def output_ext(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The output extension: from `fmt` (png, jpg, tiff, webp, bmp) or the path's suffix."""
    if fmt:
        key = fmt.lower().lstrip(".")
        if key not in FORMATS:
            raise OutputError(f"unknown format {fmt!r}; use one of {sorted(set(FORMATS))}")
        return FORMATS[key]
    ext = Path(path).suffix.lower()
    if ext not in IMAGE_EXTS:
        raise OutputError(
            f"{path}: cannot tell the image format from {ext or 'no extension'!r}; "
            "use .png, .jpg, .tiff, .webp or .bmp (or --format)"
        )
    return ext


def convert_dtype(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    src = arr.dtype
    if src == dtype:
        return arr
    if src == np.float32:
        return (np.clip(arr, 0, 1) * _scale(dtype) + 0.5).astype(dtype)
    if dtype == np.float32:
        return (arr / _scale(src)).astype(np.float32)
    if src == np.uint16 and dtype == np.uint8:
        return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return arr.astype(np.uint16) * 257  # uint8 -> uint16


def write_image(
    path: str | os.PathLike,
    pixels: np.ndarray,
    *,
    alpha: np.ndarray | None = None,
    exif: bytes | None = None,
    icc: bytes | None = None,
    quality: int | None = None,
    fmt: str | None = None,
) -> list[str]:
    """Write (H, W) gray or (H, W, 3) RGB `pixels` (+ optional (H, W) alpha) atomically.

    Returns notes on what the format could not keep (bit depth, alpha, metadata)."""
    path = Path(path)
    ext = output_ext(path, fmt)
    notes: list[str] = []
    dtype = pixels.dtype
    if dtype == np.float32 and ext not in FLOAT:
        dtype = np.dtype(np.uint16) if ext in BITS16 else np.dtype(np.uint8)
        notes.append(f"float samples written as {8 * dtype.itemsize}-bit ({ext} has no float)")
    elif dtype == np.uint16 and ext not in BITS16:
        dtype = np.dtype(np.uint8)
        notes.append(f"16-bit image written as 8-bit ({ext} stores 8 bits; use .png or .tiff)")
    pixels = convert_dtype(pixels, dtype)
    if alpha is not None and ext in NO_ALPHA:
        notes.append("alpha channel dropped (JPEG has no alpha; use .png, .webp or .tiff)")
        alpha = None
    alpha = convert_dtype(alpha, dtype) if alpha is not None else None
    meta = bool(exif or icc)
    pillow = ext in (".tif", ".tiff") and dtype == np.uint8 and meta
    gray_alpha = pixels.ndim == 2 and alpha is not None
    if gray_alpha and ext == ".png" and dtype == np.uint8:
        pillow = True
    if meta and not pillow and ext not in METADATA_CV:
        notes.append(f"EXIF/ICC not kept ({ext} output cannot carry them here)")
        meta = False
    if pillow:
        data = _encode_pillow(ext, pixels, alpha, exif, icc)
    else:
        if gray_alpha:
            pixels = np.repeat(pixels[:, :, None], 3, axis=2)
        data = _encode_cv(ext, pixels, alpha, exif if meta else None, icc if meta else None,
                          quality)  # fmt: skip
    write_bytes_atomic(path, data)
    return notes


def _encode_cv(ext, pixels, alpha, exif, icc, quality) -> bytes:
    if pixels.ndim == 3:
        bgr = pixels[:, :, ::-1]
        arr = np.dstack([bgr, alpha]) if alpha is not None else np.ascontiguousarray(bgr)
    else:
        arr = pixels
    q = DEFAULT_QUALITY if quality is None else int(quality)
    params: list[int] = []
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, q]
        if q >= 90:  # full-resolution colour for high quality
            params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    elif ext == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, q]
    types, chunks = [], []
    if exif:
        types.append(cv2.IMAGE_METADATA_EXIF)
        chunks.append(np.frombuffer(exif, np.uint8))
    if icc:
        types.append(cv2.IMAGE_METADATA_ICCP)
        chunks.append(np.frombuffer(icc, np.uint8))
    try:
        if types:
            ok, buf = cv2.imencodeWithMetadata(ext, arr, types, chunks, params)
        else:
            ok, buf = cv2.imencode(ext, arr, params)
    except cv2.error as e:
        raise OutputError(f"cannot encode {arr.shape} {arr.dtype} image as {ext}: {e}") from None
    if not ok:
        raise OutputError(f"cannot encode {arr.shape} {arr.dtype} image as {ext}")
    return buf.tobytes()


def _encode_pillow(ext, pixels, alpha, exif, icc) -> bytes:
    # Pillow infers the mode from the shape: L, LA, RGB or RGBA.
    arr = np.dstack([pixels, alpha]) if alpha is not None else pixels
    kwargs = {}
    if exif:
        kwargs["exif"] = EXIF_HEADER + exif
    if icc:
        kwargs["icc_profile"] = icc
    if ext in (".tif", ".tiff"):
        kwargs["compression"] = "tiff_lzw"
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(
        buf, "TIFF" if ext in (".tif", ".tiff") else "PNG", **kwargs
    )
    return buf.getvalue()


# --------------------------------------------------------------------------------- batches
_GLOB_CHARS = set("*?[")


@dataclass
class Found:
    """An input file and the folder its output path mirrors (relative to `base`)."""

    path: Path
    base: Path


def expand_inputs(inputs: list[str], exclude: Path | None = None) -> tuple[list[Found], list[str]]:
    """Files, folders (searched recursively for images) and globs -> (found files in order,
    without duplicates; one error line per input that matched nothing). Files under
    `exclude` (the output folder) are skipped so a rerun does not deblur its own outputs."""
    import glob

    found: list[Found] = []
    errors: list[str] = []
    seen: set[Path] = set()
    exclude = exclude.resolve() if exclude is not None else None

    def add(path: Path, base: Path, explicit: bool = False) -> None:
        key = path.resolve()
        if key in seen or (not explicit and exclude and key.is_relative_to(exclude)):
            return
        seen.add(key)
        found.append(Found(path, base))

    for text in inputs:
        path = Path(text).expanduser()
        if path.is_file():
            add(path, path.parent, explicit=True)
        elif path.is_dir() and exclude and path.resolve().is_relative_to(exclude):
            errors.append(f"{path}: this folder is inside the output folder; choose another -o")
        elif path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.is_file() and is_image_path(p))
            if not images:
                errors.append(f"{path}: no images in this folder ({', '.join(IMAGE_EXTS)})")
            for p in images:
                add(p, path)
        elif _GLOB_CHARS & set(text):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
            images = [m for m in matches if m.is_file() and is_image_path(m)]
            if not images:
                errors.append(f"{text}: no image files match this pattern")
            base = _glob_base(text)
            for p in images:
                add(p, base)
        else:
            errors.append(f"{text}: no such file or folder")
    return found, errors


def _glob_base(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard ('photos/**/*.jpg' -> 'photos')."""
    parts = Path(os.path.expanduser(pattern)).parts
    fixed = []
    for part in parts:
        if _GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def output_paths(
    found: list[Found], out: Path, to_file: bool, ext: str | None = None, stem_suffix: str = ""
) -> list[Path]:
    """Where each input's output goes: `out` itself when `to_file`, else `out` / the input's
    path relative to its base folder (mirroring the input tree), with extension `ext` (None =
    the input's) and `stem_suffix` added to the name."""
    if to_file:
        return [out]
    paths = []
    for f in found:
        rel = f.path.relative_to(f.base) if f.path.is_relative_to(f.base) else Path(f.path.name)
        name = rel.stem + stem_suffix + (ext or rel.suffix.lower())
        paths.append(out / rel.parent / name)
    return paths


def write_depth16(path: Path, depth) -> None:
    """(1, 1, H, W) tensor in [0, 1] -> 16-bit grayscale PNG (0 = far, 65535 = nearest)."""
    write_image(path, from_tensor(depth, np.uint16, gray=True))
