"""Filesystem helpers that never lose data: atomic, durable writes (temp file + fsync + rename),
and one-line messages for the OSErrors a write can meet (disk full, read-only, no permission)
that name the real output, never the temp file."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dgn_cli.errors import OutputError


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, and setting it to 0 while
# other threads (the video encoder, decoder) create files would make theirs world-writable.
_UMASK = _read_umask()

# Why a write failed, in words (errno -> text); anything else uses os.strerror.
_WHY = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EEXIST: "a file of that name is in the way",
    errno.ENOTDIR: "a parent of it is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.ENAMETOOLONG: "the name is too long",
}
# Failures that are about the output's disk or folder whatever file the OSError names.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def describe_os_error(e: OSError) -> str:
    """The reason of an OSError in a few words ("no space left on the device")."""
    return _WHY.get(e.errno, e.strerror or str(e) or type(e).__name__)


def write_error(target: str | os.PathLike, e: OSError) -> OutputError:
    """`OutputError` "TARGET: cannot write (reason)" for an OSError met while writing TARGET."""
    return OutputError(f"{target}: cannot write ({describe_os_error(e)})")


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's (or a folder's) data to the disk, so that it survives a power cut.
    Folders on file systems that cannot fsync them (EINVAL) are skipped."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if Path(path).is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def replace_durably(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """fsync `src`, rename it onto `dst`, fsync the folder: after a reboot `dst` is either the
    old file or the complete new one."""
    fsync_path(src)
    os.replace(src, dst)
    fsync_path(Path(dst).parent)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    The temp file keeps `target`'s extension (or `suffix`) so writers that pick a format from
    the name still work. The file and its folder are fsynced around the rename, so a crash or
    power cut leaves either the old target or the complete new one. On any exception, or
    Ctrl-C, the temp file is removed and `target` is left as it was. An OSError of the temp
    file or the disk (full, read-only, no permission) becomes an `OutputError` naming `target`.
    """
    target = Path(target)
    suffix = suffix if suffix is not None else target.suffix
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(
            f"{target}: cannot write (a parent of it is a file, not a folder)"
        ) from None
    except OSError as e:
        raise write_error(target, e) from None
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.stem}.", suffix=f".tmp{suffix}", dir=target.parent
        )
    except OSError as e:
        raise write_error(target, e) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes 0600 files (and some writers replace the file with their own 0600
        # temp); give the output the permissions a plain open() would, just before the rename.
        os.chmod(tmp, 0o666 & ~_UMASK)
        replace_durably(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in DISK_ERRNOS or e.filename in (tmp_name, str(target)):
            raise write_error(target, e) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(target, text.encode("utf-8"))
