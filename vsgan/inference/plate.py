"""Staining HCS plates: a plate in gives a plate out, split into shards any scheduler can run.

`predict_plate` stains every field of an OME-Zarr HCS plate into an output plate with the same
``row/column/fov`` layout, the channels ``<target>_prediction`` (and ``<target>_std`` with
Monte-Carlo samples or test-time augmentation) and each input field's pixel size.

Scale-out: ``shard=(i, n)`` stains the i-th of n disjoint subsets of positions (every n-th
position, from the i-th), so a SLURM array job, a Kubernetes indexed job or a loop of
background processes fills one shared output plate:

- the output layout (plate and well metadata) is created once, under an exclusive file lock,
  by building it in a temporary folder and renaming it into place; later shards find it and
  check it matches (same positions, channels and settings), so concurrent shards never
  write the shared metadata twice;
- each position is written into a temporary folder inside its well and renamed into place
  when whole (`vsgan.io.ome_zarr.write_position`): a position is complete or absent, never
  half written;
- a re-run of a shard skips its complete positions and clears what a killed run left.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from vsgan.errors import InputError, VsganError

__all__ = ["parse_shard", "predict_plate", "shard_positions"]


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` -> (i, n), 0 <= i < n; None -> (0, 1), the whole plate.

    >>> parse_shard("2/8"), parse_shard(None)
    ((2, 8), (0, 1))
    """
    if text is None:
        return (0, 1)
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        i, n = -1, 0
    if not 0 <= i < n:
        raise InputError(
            f"shard {text!r}: give i/n with 0 <= i < n, e.g. 0/4 .. 3/4 (SLURM: "
            '"$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT", Kubernetes: '
            '"$JOB_COMPLETION_INDEX/<completions>").'
        )
    return i, n


def shard_positions(positions: list[str], index: int, count: int) -> list[str]:
    """The positions shard `index` of `count` stains: every `count`-th, from the `index`-th.

    >>> shard_positions(["A/1/0", "A/1/1", "A/2/0", "A/2/1"], 1, 2)
    ['A/1/1', 'A/2/1']
    """
    return list(positions)[index::count]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path`'s layout, held by one process at a time."""
    import fcntl

    lock = path.with_name(f".{path.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ensure_layout(output: Path, positions: list[str], record: dict, overwrite: bool) -> bool:
    """Creates the output plate's layout once; True if it was created by this call."""
    import zarr

    from vsgan.io import ome_zarr
    from vsgan.io.files import atomic_path

    with _locked(output):
        if output.exists():
            try:
                found = dict(ome_zarr.open_group(output).attrs).get("vsgan")
            except VsganError:
                found = None
            if found == record:
                return False  # another shard (or an earlier run) made it: resume
            if not overwrite:
                what = "a plate from other inputs or settings" if found else "not a vsgan plate"
                raise VsganError(
                    f"{output} exists and is {what}. Fix: pass --overwrite to replace it, or "
                    "choose another -o (shards of one run must use the same inputs and settings)."
                )
        with atomic_path(output, overwrite=overwrite, folder=True) as tmp:
            root = zarr.open_group(str(tmp), mode="w", zarr_format=2)
            ome_zarr.create_plate(root, positions, name=output.stem)
            root.attrs["vsgan"] = record
        return True


def _read_position(source, position: str, model) -> np.ndarray:
    from vsgan.io.readers import read_image

    where = f"{source}::{position}"
    try:
        return read_image(source, list(model.input_channels), position=position)
    except InputError as by_name:
        raw = read_image(source, position=position)
        if raw.shape[-1] == int(model.in_channels):
            return raw  # unnamed (or differently named) channels, as many as the model takes
        raise InputError(f"{where}: {by_name}") from None


def predict_plate(
    model: Any,
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    shard: tuple[int, int] = (0, 1),
    samples: int = 1,
    tile_size: int | None = None,
    overlap: int | None = None,
    tta: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    model_name: str | None = None,
) -> dict[str, list[str]]:
    """Stains the positions of shard `shard` of an HCS plate into the output plate `output`.

    Args:
        model: a `vsgan.Pix2PixHD`.
        source: the input HCS OME-Zarr plate.
        output: the output plate folder (created by the first shard to get there).
        shard: (i, n): stain the i-th of n disjoint subsets of positions (`shard_positions`).
        samples: Monte-Carlo samples, as in `vsgan.inference.stain.stain`.
        tile_size: tile side, as in `stain`.
        overlap: tile overlap, as in `stain`.
        tta: test-time augmentation, as in `stain`.
        overwrite: replace an existing `output` made from other inputs or settings (an
            output from the same run is resumed, never replaced).
        progress: show a progress bar over positions.
        model_name: how the model was named (preset or file), recorded with the settings.

    Returns:
        ``{"written": [...], "skipped": [...], "missing": [...]}``: positions this call stained,
        those of its shard already complete, and those of the whole plate not yet complete.
    """
    from vsgan.inference.stain import stain
    from vsgan.io import ome_zarr
    from vsgan.io.writers import stain_channels

    source, output = Path(source), Path(output)
    index, count = shard
    if not 0 <= index < count:
        raise InputError(f"shard={shard}: give (i, n) with 0 <= i < n.")
    if source.resolve() == output.resolve():
        raise InputError(f"{output}: the output plate must not be the input plate.")
    positions = ome_zarr.plate_positions(source)
    if not positions:
        raise InputError(f"{source}: the plate lists no fields.")
    targets = list(model.output_channels)
    names = [f"{t}_prediction" for t in targets]
    if samples > 1 or tta:
        names += [f"{t}_std" for t in targets]
    if model_name is not None and Path(model_name).exists():
        model_name = str(Path(model_name).resolve())  # shards may name the file differently
    record = {
        "source": str(source.resolve()),
        "positions": positions,
        "channels": names,
        "model": model_name or getattr(model, "name", None),
        "samples": int(samples),
        "tta": bool(tta),
        "tile_size": tile_size,
        "overlap": overlap,
    }
    _ensure_layout(output, positions, record, overwrite)

    mine = shard_positions(positions, index, count)
    written, skipped = [], []
    for position in tqdm(mine, desc=f"shard {index}/{count}", disable=not progress):
        if ome_zarr.position_complete(output, position):
            skipped.append(position)
            continue
        ome_zarr.remove_partial_position(output, position)
        raw = _read_position(source, position, model)
        result = stain(model, raw, samples=samples, tile_size=tile_size, overlap=overlap, tta=tta)
        _, planes = stain_channels(result.mean, result.std, targets)
        ome_zarr.write_position(
            output,
            position,
            np.stack(planes).astype(np.float32, copy=False),
            names,
            pixel_size=ome_zarr.field_pixel_size(source, position),
        )
        written.append(position)
    missing = [p for p in positions if not ome_zarr.position_complete(output, p)]
    return {"written": written, "skipped": skipped, "missing": missing}
