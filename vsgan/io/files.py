"""File helpers, each written once: atomic writes of files and folders, sha256, size limits.

Why atomic: a crash, a kill or a full disk in the middle of a write must leave the previous
file (or none) in place, never a truncated one that a later run trusts. Everything is written
to a hidden temporary name in the destination's folder (one file system, so `os.replace` is a
rename), flushed to disk, then renamed over the destination.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vsgan.errors import InputError, VsganError

# Larger images are refused before they are read (a corrupt or hostile header can claim
# terabytes); raise it for genuinely larger fields.
MAX_IMAGE_BYTES = 16 * 2**30
TMP_PREFIX = ".tmp-"


def sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks.

    Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = p.write_bytes(b"abc")
    >>> sha256(p)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync(path: str | os.PathLike) -> None:
    """Flushes a written file's data to disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def refuse_existing(path: str | os.PathLike, overwrite: bool) -> None:
    """Raises `VsganError` if `path` exists and `overwrite` is false."""
    if os.path.lexists(path) and not overwrite:
        raise VsganError(
            f"{path} exists: pass overwrite=True (--overwrite) or choose another path."
        )


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike, *, overwrite: bool = True, folder: bool = False
) -> Iterator[Path]:
    """Yields a temporary path beside `path`; on success it replaces `path` in one rename.

    Args:
        path: the final file (or folder, with `folder=True`).
        overwrite: replace an existing `path` (else `VsganError` before anything is written).
        folder: the result is a directory (e.g. a SavedModel or a zarr store). An existing
            folder is moved aside, not deleted, until the new one is in place.

    Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "result.txt"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("done")
    >>> out.read_text()
    'done'
    """
    path = Path(path)
    refuse_existing(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:])  # Keras and tifffile look at the suffix
    if folder:
        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, suffix=suffix, dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        # mkstemp / mkdtemp create 0600 / 0700; a result gets the permissions of any file
        # the user writes (0666 / 0777 less the umask), as it would without the rename.
        os.chmod(tmp, (0o777 if folder else 0o666) & ~_umask())
        yield tmp
        if folder:
            _replace_folder(tmp, path)
        else:
            fsync(tmp)
            os.replace(tmp, path)
    except OSError as error:
        # A full disk often reports only byte counts ("4096 requested and 956 written"):
        # the message must name the file the user asked for.
        if str(path) not in str(error):
            raise _naming(error, path) from error
        raise
    finally:
        if folder:
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def _naming(error: OSError, path: Path) -> OSError:
    """The same kind of error, its message naming `path`."""
    if error.errno is not None:
        args = (error.errno, f"{error.strerror or error} while writing {path}", str(path))
    else:
        args = (f"{error} (while writing {path})",)
    try:
        return type(error)(*args)
    except Exception:  # a subclass with another constructor
        return OSError(*args)


def _replace_folder(tmp: Path, path: Path) -> None:
    old = None
    if path.exists():  # moved aside, not deleted, until the new one is in place
        old = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + "old-", dir=path.parent))
        os.replace(path, old / "previous")
    try:
        os.replace(tmp, path)
    except BaseException:
        if old is not None:
            os.replace(old / "previous", path)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Deletes temporaries left in `folder` by a write that was killed; returns them."""
    stale = sorted(Path(folder).glob(TMP_PREFIX + "*"))
    for p in stale:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return stale


def check_size(shape, dtype, where) -> None:
    """Refuses images whose decoded size passes `MAX_IMAGE_BYTES`, before decoding them."""
    try:
        nbytes = int(np.prod([int(n) for n in shape], dtype=object)) * np.dtype(dtype).itemsize
    except (TypeError, ValueError, OverflowError) as error:
        raise InputError(
            f"{where}: the image claims an unreadable shape {shape} ({error})."
        ) from None
    if min((int(n) for n in shape), default=1) < 0:
        raise InputError(f"{where}: the image claims a negative size {tuple(shape)}.")
    if nbytes > MAX_IMAGE_BYTES:
        raise InputError(
            f"{where}: the image claims shape {tuple(shape)} ({nbytes / 2**30:.1f} GiB), more "
            f"than vsgan reads at once ({MAX_IMAGE_BYTES / 2**30:.0f} GiB). Fix: check the file "
            "is not corrupt, crop it into fields, or raise vsgan.io.files.MAX_IMAGE_BYTES."
        )
