"""OME-Zarr (NGFF) fields and HCS plates: read fields with their channel names, write small plates.

A field is the multiscale image group of one field of view: array ``0`` shaped TCZYX (or the
axes its ``multiscales`` metadata lists) and channel names in ``omero.channels[].label``. An HCS
plate nests fields as ``row/column/fov`` (the VSCyto2D A549 stores use ``0/0/<fov>``). Both
NGFF 0.4 (zarr v2, attributes at the group root) and 0.5 (zarr v3, attributes under ``"ome"``)
are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vsgan.errors import DataFileError, InputError
from vsgan.io.files import check_size


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


def write_plate(
    path: str | Path,
    fields: dict[str, np.ndarray],
    channel_names: list[str],
    *,
    chunks: tuple[int, ...] | None = None,
) -> None:
    """Writes a small HCS OME-Zarr plate (NGFF 0.4, zarr v2), e.g. the VSCyto2D layout.

    Args:
        path: folder to create.
        fields: ``{"row/col/fov": array}`` with arrays shaped TCZYX.
        channel_names: one label per C.
        chunks: array chunks; default one YX plane per chunk.

    Example:
    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "plate.zarr")
    >>> write_plate(p, {"0/0/0": np.zeros((1, 2, 1, 8, 8), "float32")}, ["Phase3D", "Nuclei"])
    >>> plate_positions(p)
    ['0/0/0']
    """
    import zarr

    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    wells: dict[str, list[str]] = {}
    for pos in fields:
        row, col, fov = pos.split("/")
        wells.setdefault(f"{row}/{col}", []).append(fov)
    rows = sorted({w.split("/")[0] for w in wells})
    cols = sorted({w.split("/")[1] for w in wells})
    root.attrs["plate"] = {
        "version": "0.4",
        "rows": [{"name": r} for r in rows],
        "columns": [{"name": c} for c in cols],
        "wells": [
            {
                "path": w,
                "rowIndex": rows.index(w.split("/")[0]),
                "columnIndex": cols.index(w.split("/")[1]),
            }
            for w in wells
        ],
    }
    for well, fovs in wells.items():
        root.require_group(well).attrs["well"] = {
            "version": "0.4",
            "images": [{"path": f} for f in fovs],
        }
    for pos, data in fields.items():
        data = np.asarray(data)
        if data.ndim != 5 or data.shape[1] != len(channel_names):
            raise InputError(
                f"field {pos}: expected a TCZYX array with C={len(channel_names)}, "
                f"got {data.shape}."
            )
        group = root.require_group(pos)
        group.attrs["multiscales"] = [
            {
                "version": "0.4",
                "axes": [{"name": "T", "type": "time"}, {"name": "C", "type": "channel"}]
                + [{"name": a, "type": "space"} for a in "ZYX"],
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [{"type": "scale", "scale": [1.0] * 5}],
                    }
                ],
            }
        ]
        group.attrs["omero"] = {
            "version": "0.4",
            "channels": [{"label": n, "active": True} for n in channel_names],
        }
        arr = group.create_array(
            "0", shape=data.shape, dtype=data.dtype, chunks=chunks or (1, 1, 1, *data.shape[-2:])
        )
        arr[:] = data
