"""Run-folder safety: one writer at a time, nothing removed that vsgan did not write, and
no silent resume of a different experiment.

A run folder (`vsgan train --out`) may also hold the user's own files (a notebook, notes,
the data). `RunFolder` keeps three promises:

- **lock**: a `train` holds an exclusive `fcntl` lock on `<run>/.vsgan.lock` for its whole
  life, so a second `train` on the same folder is refused at once (instead of interleaving
  `history.csv`). The lock dies with the process, so a killed run never blocks a re-run.
- **manifest**: every path vsgan writes is recorded in `<run>/.vsgan-manifest.json` before it
  is written; `overwrite` removes exactly those (and vsgan's stale `.tmp-*` files), never
  anything else.
- **same experiment**: a resumed run is compared with the saved `recipe.json`; a different
  dataset, data folder, seed, patch size, batch size, model or precision is refused unless
  `force_resume=True` (`vsgan train --force-resume`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from vsgan.errors import InputError, VsganError
from vsgan.io.files import TMP_PREFIX, atomic_path, remove_stale_temporaries

LOCK_NAME = ".vsgan.lock"
MANIFEST_NAME = ".vsgan-manifest.json"
# What a run folder of a vsgan older than the manifest holds (used when none is found).
LEGACY_OUTPUTS = ("recipe.json", "model.keras", "backup", "history.csv", "logs")
# Recipe fields that define the experiment: resuming with another value trains a mixture.
IDENTITY_FIELDS = (
    "dataset",
    "dataset_args",
    "data",
    "model",
    "patch_size",
    "batch_size",
    "steps_per_epoch",
    "seed",
    "precision",
    "foreground_weighted",
    "deterministic",
)


class RunFolderBusy(VsganError, BlockingIOError):
    """Another process is training into the same run folder."""


class ResumeMismatch(InputError):
    """The saved recipe of a run differs from the one asked to resume it."""


class RunFolder:
    """The run folder of one `train` call; use as a context manager to hold its lock.

    Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> with RunFolder(out) as run:
    ...     _ = run.record("history.csv")
    ...     _ = (out / "history.csv").write_text("epoch")
    ...     _ = (out / "notes.txt").write_text("mine")
    ...     removed = run.clear()
    >>> [p.name for p in removed], sorted(p.name for p in out.iterdir() if p.name[0] != ".")
    (['history.csv'], ['notes.txt'])
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None
        self._created = False

    # ------------------------------------------------------------------ lock
    def __enter__(self) -> RunFolder:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        """Creates the folder if needed and takes its exclusive lock, or refuses at once."""
        import fcntl

        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"{self.path} is a file: give a folder for the run (--out).")
        self._created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunFolderBusy(
                    f"{self.path} is in use by another vsgan train (it holds "
                    f"{self.path / LOCK_NAME}). Fix: wait for it to finish, or choose another "
                    "--out."
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self, remove_if_empty: bool = False) -> None:
        """Releases the lock; a folder this run created and left empty is removed."""
        if self._fd is None:
            return
        os.close(self._fd)  # closing drops the flock
        self._fd = None
        if remove_if_empty and self._created:
            left = [p for p in self.path.iterdir() if p.name not in (LOCK_NAME, MANIFEST_NAME)]
            if not left:
                shutil.rmtree(self.path, ignore_errors=True)

    # -------------------------------------------------------------- manifest
    def written(self) -> list[str]:
        """Relative paths vsgan wrote here (legacy runs: the fixed output names found)."""
        try:
            names = json.loads((self.path / MANIFEST_NAME).read_text())["written"]
            if isinstance(names, list) and all(isinstance(n, str) for n in names):
                return names
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return [n for n in LEGACY_OUTPUTS if (self.path / n).exists()]

    def record(self, *names: str | os.PathLike) -> list[str]:
        """Adds paths (relative to the folder) to the manifest, before they are written."""
        known = self.written()
        for name in names:
            rel = Path(name)
            if rel.is_absolute():
                rel = rel.relative_to(self.path)
            if rel.as_posix() not in known:
                known.append(rel.as_posix())
        with atomic_path(self.path / MANIFEST_NAME) as tmp:
            tmp.write_text(json.dumps({"written": known}, indent=1))
        return known

    def clear(self) -> list[Path]:
        """Removes what vsgan wrote (manifest entries, stale temporaries); keeps the rest."""
        removed = []
        for name in self.written():
            target = self.path / name
            if not target.resolve().is_relative_to(self.path.resolve()):
                continue  # a damaged manifest never reaches outside the folder
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            else:
                continue
            removed.append(target)
        removed += self.remove_temporaries()
        with atomic_path(self.path / MANIFEST_NAME) as tmp:
            tmp.write_text(json.dumps({"written": []}))
        return removed

    def remove_temporaries(self) -> list[Path]:
        """Deletes `.tmp-*` files left by a killed write (safe: the lock is held)."""
        stale = remove_stale_temporaries(self.path)
        for sub in self.written():
            if (self.path / sub).is_dir():
                stale += remove_stale_temporaries(self.path / sub)
        return stale

    # --------------------------------------------------------------- resume
    def check_resume(self, config: dict[str, Any], force: bool = False) -> None:
        """Refuses to resume a run whose saved `recipe.json` differs in what defines it."""
        saved_path = self.path / "recipe.json"
        if not saved_path.is_file():
            return
        try:
            saved = json.loads(saved_path.read_text())
        except (OSError, ValueError) as error:
            if force:
                return
            raise ResumeMismatch(
                f"{saved_path}: unreadable ({error}), so this run cannot be checked before it "
                "is resumed. Fix: pass --force-resume (force_resume=True) to resume anyway, "
                "or --overwrite to start again."
            ) from None
        if not isinstance(saved, dict):
            saved = {}
        differ = [
            f"{k}: saved {saved.get(k)!r}, now {config.get(k)!r}"
            for k in IDENTITY_FIELDS
            if k in saved and _norm(saved.get(k), k) != _norm(config.get(k), k)
        ]
        if differ and not force:
            raise ResumeMismatch(
                f"{self.path} holds an unfinished run of another experiment ("
                + "; ".join(differ)
                + "). Resuming would train a mixture. Fix: use the recipe it was started with, "
                "choose another --out, pass --overwrite to start again, or --force-resume to "
                "resume anyway."
            )


def _norm(value: Any, key: str = "") -> Any:
    """Compares JSON-equal values equal (tuples as lists; the data path resolved)."""
    if key == "data" and value is not None:
        return str(Path(str(value)).resolve())
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def data_path(data: str | os.PathLike | None) -> str | os.PathLike | None:
    """`data` unchanged if it exists (or is None); a given path that does not exist is refused.

    A mistyped `--data` must not silently fall back to `$VSGAN_DATA`.
    """
    if data is None:
        return None
    if not Path(data).exists():
        raise InputError(
            f"--data {data}: no such file or folder (vsgan does not fall back to $VSGAN_DATA "
            "when a data path is given). Fix: check the path, or leave --data out to use "
            "$VSGAN_DATA."
        )
    return data


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[RunFolder]:
    """`with locked(out) as run:` holds the run folder's lock (see `RunFolder`)."""
    run = RunFolder(path)
    run.acquire()
    ok = False
    try:
        yield run
        ok = True
    finally:
        run.release(remove_if_empty=not ok)


def vsgan_temporaries(paths: Iterable[Path]) -> list[Path]:
    """The `.tmp-*` entries among `paths`."""
    return [p for p in paths if p.name.startswith(TMP_PREFIX)]
