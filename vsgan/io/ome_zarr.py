"""OME-Zarr (NGFF) fields and HCS plates: read fields with their channel names; the one writer.

A field is the multiscale image group of one field of view: array ``0`` shaped TCZYX (or the
axes its ``multiscales`` metadata lists) and channel names in ``omero.channels[].label``. An HCS
plate nests fields as ``row/column/fov`` (the VSCyto2D A549 stores use ``0/0/<fov>``). Both
NGFF 0.4 (zarr v2, attributes at the group root) and 0.5 (zarr v3, attributes under ``"ome"``)
are read.

Writing: every OME-Zarr vsgan writes (a stained field, a stained plate, a streamed mosaic,
test plates) goes through `create_image` / `finish_image` here, and its metadata through
**ome-zarr-py** (``ome_zarr.writer``, the OME consortium's reference implementation): NGFF 0.4
(zarr format 2, what napari-ome-zarr, iohub and most viewers read today) with
``coordinateTransformations`` ``scale`` in the axes' physical unit, and ``omero`` channels with
``label``, ``color`` and ``window`` (min/max/start/end). Why ome-zarr-py: it runs on zarr >= 3
and Python 3.11 as vsgan does and validates the metadata it writes; iohub (VisCy's library) pins
zarr < 3 on Python 3.11 (its 0.3 needs Python 3.12), so it cannot be a dependency here; vsgan's
output is checked against iohub in a separate environment instead (tests/test_io_writers.py).
Arrays are written with zarr directly, so large fields stream tile by tile, and plate positions
are staged in a temporary folder and renamed into place once complete.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from vsgan.errors import DataFileError, InputError
from vsgan.io.files import TMP_PREFIX, check_size
from vsgan.io.metadata import PixelSize


def _attrs(group) -> dict[str, Any]:
    attrs = dict(group.attrs)
    # NGFF 0.5 keeps everything under "ome".
    return dict(attrs.get("ome", attrs))


def open_group(path: str | Path):
    """Opens a zarr group read-only, turning zarr's errors into a `DataFileError`."""
    import zarr

    try:
        return zarr.open_group(str(path), mode="r")
    except Exception as e:  # zarr raises several types for missing / corrupt stores
        raise DataFileError(
            f"{path}: cannot open as a zarr group ({type(e).__name__}: {e}). Fix: pass the folder "
            "of an OME-Zarr store (it holds .zattrs/.zgroup or zarr.json)."
        ) from e


def looks_like_zarr(path: str | Path) -> bool:
    """True when `path` is a folder holding zarr group metadata."""
    path = Path(path)
    return path.is_dir() and any((path / m).exists() for m in (".zattrs", ".zgroup", "zarr.json"))


def is_plate(path: str | Path) -> bool:
    """True when the zarr store at `path` carries HCS ``plate`` metadata."""
    return "plate" in _attrs(open_group(path))


def plate_positions(path: str | Path) -> list[str]:
    """Lists the field positions (``row/col/fov``) of an HCS plate, in metadata order.

    Args:
        path: the plate's root folder.

    Returns:
        Position paths such as ``["0/0/0", "0/0/1"]``.
    """
    root = open_group(path)
    plate = _attrs(root).get("plate")
    if plate is None:
        raise DataFileError(f"{path}: no 'plate' metadata; it is not an HCS OME-Zarr plate.")
    positions = []
    for well in plate.get("wells", []):
        well_path = well["path"]
        try:
            images = _attrs(root[well_path]).get("well", {}).get("images")
        except KeyError as e:
            raise DataFileError(f"{path}: well {well_path!r} is listed but missing.") from e
        if images is None:  # metadata-less wells: take the sub-groups
            images = [{"path": k} for k in sorted(root[well_path].group_keys())]
        positions += [f"{well_path}/{im['path']}" for im in images]
    return positions


def _field_group(path: str | Path, position: str | None):
    root = open_group(path)
    if position is None:
        if "plate" in _attrs(root):
            raise InputError(
                f"{path} is an HCS plate: name a field, e.g. position={plate_positions(path)[0]!r} "
                f"or the path '{path}::{plate_positions(path)[0]}'."
            )
        return root
    try:
        return root[position]
    except KeyError as e:
        known = plate_positions(path) if "plate" in _attrs(root) else []
        raise InputError(f"{path}: no field {position!r}. Known positions: {known}.") from e


def field_channel_names(path: str | Path, position: str | None = None) -> list[str] | None:
    """Channel names of one field from its OMERO metadata, or None if it has none."""
    group = _field_group(path, position)
    channels = _attrs(group).get("omero", {}).get("channels")
    if not channels:
        return None
    return [str(c.get("label", i)) for i, c in enumerate(channels)]


def _axes(group, ndim: int) -> str:
    multiscales = _attrs(group).get("multiscales")
    if multiscales and "axes" in multiscales[0]:
        axes = multiscales[0]["axes"]
        return "".join((a["name"] if isinstance(a, dict) else a).upper() for a in axes)
    return "TCZYX"[-ndim:]


def read_field(
    path: str | Path,
    position: str | None = None,
    *,
    timepoint: int = 0,
    z: int | None = None,
    level: str = "0",
) -> tuple[np.ndarray, list[str]]:
    """Reads one OME-Zarr field as (H, W, C) with its channel names.

    Args:
        path: store root (a single field or an HCS plate).
        position: ``row/col/fov`` of the field inside a plate; None for a single field.
        timepoint: the T index to read.
        z: the Z index to read; None reads every plane, as extra channels named ``name/zK``
            when there is more than one (several focal planes as inputs).
        level: the resolution level array (``"0"`` is full resolution).

    Returns:
        ``(array, names)``: array (H, W, C) in the stored dtype, names a list of C strings.
    """
    group = _field_group(path, position)
    where = f"{path}::{position}" if position else str(path)
    try:
        arr = group[level]
    except KeyError as e:
        raise DataFileError(f"{where}: no array {level!r} (expected a TCZYX array '0').") from e
    axes = _axes(group, arr.ndim)
    index = []
    for ax in axes:
        if ax == "T":
            index.append(timepoint)
        elif ax == "Z" and z is not None:
            index.append(z)
        else:
            index.append(slice(None))

    if len(index) != arr.ndim or "Y" not in axes or "X" not in axes:
        raise DataFileError(
            f"{where}: array {level!r} has shape {arr.shape} but axes {axes!r}. Fix: write the "
            "field as a TCZYX array with matching multiscales axes."
        )
    check_size([n for n, i in zip(arr.shape, index) if isinstance(i, slice)], arr.dtype, where)
    try:
        data = np.asarray(arr[tuple(index)])
    except IndexError as e:
        raise InputError(f"{where}: {e} (array shape {arr.shape}, axes {axes!r}).") from None
    except Exception as e:  # codecs and stores raise many types on damaged chunks
        raise DataFileError(
            f"{where}: cannot read array {level!r} ({type(e).__name__}: {e}). Fix: the store is "
            "damaged or incomplete; copy it again."
        ) from None
    kept = [a for a in axes if not (a == "T" or (a == "Z" and z is not None))]
    c = data.shape[kept.index("C")] if "C" in kept else 1
    nz = data.shape[kept.index("Z")] if "Z" in kept else 1
    for ax in ("C", "Z"):  # make it (C, Z, Y, X)
        if ax not in kept:
            data = data[np.newaxis]
            kept.insert(0, ax)
    data = np.transpose(data, [kept.index(a) for a in "CZYX"])
    names = field_channel_names(path, position) or [str(i) for i in range(c)]
    if len(names) != c:
        names = [str(i) for i in range(c)]
    if nz > 1:
        names = [f"{n}/z{k}" for n in names for k in range(nz)]
    data = data.reshape(c * nz, *data.shape[-2:])
    return np.moveaxis(data, 0, -1), names


def field_pixel_size(path: str | Path, position: str | None = None) -> PixelSize | None:
    """The Y/X pixel size of a field from its full-resolution ``scale`` and axes units."""
    group = _field_group(path, position)
    multiscales = _attrs(group).get("multiscales")
    if not multiscales:
        return None
    ms = multiscales[0]
    axes = [a if isinstance(a, dict) else {"name": a} for a in ms.get("axes", [])]
    names = [str(a.get("name", "")).lower() for a in axes]
    if "y" not in names or "x" not in names or not ms.get("datasets"):
        return None
    scale = None
    for t in ms["datasets"][0].get("coordinateTransformations", []):
        if t.get("type") == "scale" and len(t.get("scale", [])) == len(names):
            scale = t["scale"]
    if scale is None:
        return None
    iy, ix = names.index("y"), names.index("x")
    unit = axes[ix].get("unit")
    if unit is None or axes[iy].get("unit") != unit:
        return None
    z = (
        scale[names.index("z")]
        if "z" in names and axes[names.index("z")].get("unit") == unit
        else None
    )
    return PixelSize.parse(scale[iy], scale[ix], unit, z)


# ------------------------------------------------------------------------------------ writing
_PALETTE = ("00FFFF", "FF00FF", "FFFF00", "00FF00", "FF0000", "0000FF", "FFFFFF")
_COLORS = {  # usual display colours of common stains
    "nucl": "0000FF",
    "dna": "0000FF",
    "dapi": "0000FF",
    "hoechst": "0000FF",
    "mem": "FF00FF",
    "actin": "00FF00",
    "tubulin": "00FF00",
    "mito": "FF0000",
}


def channel_colors(names: list[str]) -> list[str]:
    """Hex colours (no ``#``) per channel: a stain's usual colour, ``<t>_std`` like ``<t>``.

    >>> channel_colors(["nuclei_prediction", "membrane_prediction", "nuclei_std"])
    ['0000FF', 'FF00FF', '0000FF']
    """
    bases = [n.rsplit("_", 1)[0] if n.endswith(("_prediction", "_std")) else n for n in names]
    order = list(dict.fromkeys(bases))
    colors = []
    for base in bases:
        key = base.lower()
        known = next((c for k, c in _COLORS.items() if key.startswith(k)), None)
        colors.append(known or _PALETTE[order.index(base) % len(_PALETTE)])
    return colors


def window(data: np.ndarray) -> dict[str, float]:
    """An OMERO display window: the data's range, and 0.1-99.9 percentiles as contrast."""
    flat = np.asarray(data).reshape(-1)
    flat = flat[:: max(1, flat.size // 1_000_000)]
    flat = flat[np.isfinite(flat)] if flat.dtype.kind == "f" else flat
    if flat.size == 0:
        return {"min": 0.0, "max": 1.0, "start": 0.0, "end": 1.0}
    lo, hi = float(flat.min()), float(flat.max())
    start, end = (float(v) for v in np.percentile(flat, [0.1, 99.9]))
    if hi <= lo:
        hi = lo + 1.0
    if end <= start:
        start, end = lo, hi
    return {"min": lo, "max": hi, "start": start, "end": end}


def _dtype_window(dtype) -> dict[str, float]:
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return {
            "min": float(info.min),
            "max": float(info.max),
            "start": 0.0,
            "end": float(info.max),
        }
    return {"min": 0.0, "max": 1.0, "start": 0.0, "end": 1.0}


def _omero(names: list[str], windows: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "version": "0.4",
        "channels": [
            {"label": n, "color": c, "active": True, "window": w}
            for n, c, w in zip(names, channel_colors(names), windows, strict=True)
        ],
        "rdefs": {"defaultT": 0, "defaultZ": 0, "model": "color"},
    }


def _ngff_axes(pixel_size: PixelSize | None) -> list[dict[str, str]]:
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}]
    for a in "zyx":
        axis = {"name": a, "type": "space"}
        if pixel_size is not None:
            axis["unit"] = pixel_size.unit
        axes.append(axis)
    return axes


def _scale(pixel_size: PixelSize | None) -> list[float]:
    if pixel_size is None:
        return [1.0] * 5
    return [1.0, 1.0, pixel_size.z or 1.0, pixel_size.y, pixel_size.x]


def _ngff_format():
    try:
        from ome_zarr.format import FormatV04
    except ImportError:
        from vsgan.errors import VsganError

        raise VsganError(
            "writing OME-Zarr needs ome-zarr-py, which is not installed. Fix: "
            'pip install "vsgan[zarr]"'
        ) from None

    return FormatV04()


def create_image(
    group,
    shape: tuple[int, int, int, int, int],
    channel_names: list[str],
    *,
    dtype="float32",
    pixel_size: PixelSize | None = None,
    chunks: tuple[int, ...] | None = None,
    name: str | None = None,
):
    """Creates the array ``0`` (TCZYX) of an NGFF 0.4 image in zarr `group`, with its metadata.

    The OMERO windows cover the dtype's range until `finish_image` sets them from the data.

    Args:
        group: a zarr (format 2) group, empty.
        shape: (T, C, Z, Y, X).
        channel_names: C labels.
        dtype: the array's dtype.
        pixel_size: the physical pixel size, or None (unit-less scale 1).
        chunks: array chunks; default one plane of at most 2048 x 2048 per chunk.
        name: the image's name in the metadata.

    Returns:
        The (empty) zarr array, to be filled by the caller.
    """
    fmt = _ngff_format()
    from ome_zarr.writer import write_multiscales_metadata

    if len(shape) != 5 or shape[1] != len(channel_names):
        raise InputError(
            f"expected a TCZYX shape with C={len(channel_names)} ({channel_names}), got {shape}."
        )
    chunks = chunks or (1, 1, 1, min(shape[3], 2048), min(shape[4], 2048))
    array = group.create_array("0", shape=shape, dtype=dtype, chunks=chunks, fill_value=0)
    write_multiscales_metadata(
        group,
        [
            {
                "path": "0",
                "coordinateTransformations": [{"type": "scale", "scale": _scale(pixel_size)}],
            }
        ],
        fmt=fmt,
        axes=_ngff_axes(pixel_size),
        name=name,
        metadata={"omero": _omero(list(channel_names), [_dtype_window(dtype)] * shape[1])},
    )
    return array


def finish_image(group, channel_names: list[str], windows: list[dict[str, float]]) -> None:
    """Sets the OMERO display windows of an image written with `create_image`."""
    fmt = _ngff_format()
    from ome_zarr.writer import add_metadata

    add_metadata(group, {"omero": _omero(list(channel_names), windows)}, fmt=fmt)


def _write_group(path: Path, data: np.ndarray, channel_names, pixel_size, chunks=None, name=None):
    import zarr

    data = np.asarray(data)
    if data.ndim == 3:  # (C, Y, X)
        data = data[None, :, None]
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    array = create_image(
        group,
        data.shape,
        channel_names,
        dtype=data.dtype,
        pixel_size=pixel_size,
        chunks=chunks,
        name=name,
    )
    array[...] = data
    finish_image(group, channel_names, [window(data[:, c]) for c in range(data.shape[1])])


def write_image(
    path: str | Path,
    data: np.ndarray,
    channel_names: list[str],
    *,
    pixel_size: PixelSize | None = None,
    overwrite: bool = False,
) -> Path:
    """Writes one NGFF 0.4 image (a field), atomically.

    Args:
        path: the ``.zarr`` folder to write.
        data: (C, Y, X) or (T, C, Z, Y, X).
        channel_names: one label per channel.
        pixel_size: the physical pixel size, or None.
        overwrite: replace an existing `path`.

    Example:
    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "f.zarr")
    >>> data = np.ones((2, 8, 8), "float32")
    >>> _ = write_image(p, data, ["a", "b"], pixel_size=PixelSize(0.5, 0.5))
    >>> field_channel_names(p), field_pixel_size(p)
    (['a', 'b'], PixelSize(y=0.5, x=0.5, unit='micrometer', z=1.0))
    """
    from vsgan.io.files import atomic_path

    with atomic_path(path, overwrite=overwrite, folder=True) as tmp:
        _write_group(tmp, data, list(channel_names), pixel_size, name=Path(path).stem)
    return Path(path)


def _split_position(position: str) -> tuple[str, str, str]:
    parts = position.split("/")
    if len(parts) != 3 or not all(parts):
        raise InputError(f"plate position {position!r}: expected 'row/column/fov'.")
    return parts[0], parts[1], parts[2]


def create_plate(group, positions: list[str], *, name: str | None = None) -> None:
    """Writes HCS plate and well metadata (NGFF 0.4) for `positions` into an empty zarr group.

    Rows and columns keep the order they first appear in; the fields themselves are written
    by `write_position` (or `create_image` on ``group[position]``).
    """
    fmt = _ngff_format()
    from ome_zarr.writer import write_plate_metadata, write_well_metadata

    wells: dict[str, list[str]] = {}
    for pos in positions:
        row, col, fov = _split_position(pos)
        wells.setdefault(f"{row}/{col}", []).append(fov)
    rows = list(dict.fromkeys(w.split("/")[0] for w in wells))
    cols = list(dict.fromkeys(w.split("/")[1] for w in wells))
    write_plate_metadata(
        group,
        rows,
        cols,
        list(wells),
        fmt=fmt,
        field_count=max(len(f) for f in wells.values()),
        name=name,
    )
    for well, fovs in wells.items():
        write_well_metadata(group.require_group(well), [{"path": f} for f in fovs], fmt=fmt)


def position_complete(plate: str | Path, position: str) -> bool:
    """True when `position` of the plate at `plate` was written completely."""
    field = Path(plate, *_split_position(position))
    return (field / ".zattrs").is_file() and (field / "0" / ".zarray").is_file()


def remove_partial_position(plate: str | Path, position: str) -> list[Path]:
    """Deletes what a killed `write_position` of `position` left behind; returns it."""
    import shutil

    row, col, fov = _split_position(position)
    stale = sorted(Path(plate, row, col).glob(f"{TMP_PREFIX}{fov}-*"))
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def write_position(
    plate: str | Path,
    position: str,
    data: np.ndarray,
    channel_names: list[str],
    *,
    pixel_size: PixelSize | None = None,
    chunks: tuple[int, ...] | None = None,
) -> Path:
    """Writes one field of a plate made by `create_plate`: staged beside it, renamed when whole.

    A reader (or a resuming run) sees the position either complete or absent, never half
    written; when another process completed it first, that copy is kept.

    Args:
        plate: the plate's root folder.
        position: ``row/col/fov``.
        data: (C, Y, X) or (T, C, Z, Y, X).
        channel_names: one label per channel.
        pixel_size: the physical pixel size, or None.
        chunks: array chunks (default one plane per chunk).

    Returns:
        The field's folder.
    """
    import errno
    import shutil
    import tempfile

    row, col, fov = _split_position(position)
    well = Path(plate, row, col)
    if not (well / ".zattrs").is_file():
        raise InputError(f"{plate}: well {row}/{col} is not in the plate's layout.")
    final = well / fov
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{fov}-", dir=well))
    try:
        _write_group(tmp, data, list(channel_names), pixel_size, chunks, name=position)
        try:
            os.rename(tmp, final)
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not position_complete(
                plate, position
            ):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def write_plate(
    path: str | Path,
    fields: dict[str, np.ndarray],
    channel_names: list[str],
    *,
    chunks: tuple[int, ...] | None = None,
    pixel_size: PixelSize | None = None,
) -> None:
    """Writes a small HCS OME-Zarr plate (NGFF 0.4, zarr v2), e.g. the VSCyto2D layout.

    Args:
        path: folder to create.
        fields: ``{"row/col/fov": array}`` with arrays shaped TCZYX.
        channel_names: one label per C.
        chunks: array chunks; default one YX plane per chunk.
        pixel_size: the physical pixel size of every field, or None.

    Example:
    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "plate.zarr")
    >>> write_plate(p, {"0/0/0": np.zeros((1, 2, 1, 8, 8), "float32")}, ["Phase3D", "Nuclei"])
    >>> plate_positions(p)
    ['0/0/0']
    """
    import zarr

    for pos, data in fields.items():
        shape = np.shape(data)
        if len(shape) != 5 or shape[1] != len(channel_names):
            raise InputError(
                f"field {pos}: expected a TCZYX array with C={len(channel_names)}, got {shape}."
            )
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    create_plate(root, list(fields), name=Path(path).stem)
    for pos, data in fields.items():
        write_position(
            path, pos, np.asarray(data), channel_names, pixel_size=pixel_size, chunks=chunks
        )
