"""Writing stains like the input came: one OME-TIFF or one OME-Zarr image per field, atomically.

Channel names follow VisCy: `<target>_prediction` for the mean stain and `<target>_std` for
its per-pixel standard deviation over Monte-Carlo samples. Every output holds all channels of
its field as float32, with their names and the input's physical pixel size:

- TIFF: ``<field>_prediction.ome.tif``, an OME-TIFF (axes CYX) with ``Channel`` names and
  ``PhysicalSizeX/Y`` + unit, plus resolution tags in pixels per centimeter for readers that
  ignore OME-XML. ``field.ome.tif`` in gives ``field_prediction.ome.tif`` out.
- Zarr: ``<field>.zarr``, an NGFF 0.4 image written by `vsgan.io.ome_zarr.write_image` (the one
  OME-Zarr writer).

A calibrated interval adds `<target>_lower<level%>` and `<target>_upper<level%>` channels
(e.g. `dapi_lower90`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vsgan.errors import InputError
from vsgan.io import ome_zarr
from vsgan.io.files import atomic_path
from vsgan.io.metadata import PixelSize, ome_unit
from vsgan.io.readers import field_stem

__all__ = ["stain_channels", "write_ome_tiff", "write_stain", "write_tiff"]


def stain_channels(
    mean: np.ndarray, std: np.ndarray | None, targets: list[str]
) -> tuple[list[str], list[np.ndarray]]:
    """The output channels of a stain: names and (H, W) planes, predictions then stds."""
    names = [f"{t}_prediction" for t in targets]
    planes = [mean[..., i] for i in range(len(targets))]
    if std is not None:
        names += [f"{t}_std" for t in targets]
        planes += [std[..., i] for i in range(len(targets))]
    return names, planes


def _safe_name(name: str) -> str:
    """A channel name as a file-name part: path separators and control characters become _."""
    import re

    return re.sub(r"[\\/\x00-\x1f:*?\"<>|]", "_", str(name)).strip(". ") or "channel"


def write_tiff(path: str | os.PathLike, image: np.ndarray, overwrite: bool = False) -> Path:
    """Writes a 2-D float32 image as a plain TIFF, atomically."""
    import tifffile

    with atomic_path(path, overwrite=overwrite) as tmp:
        tifffile.imwrite(tmp, np.asarray(image, np.float32))
    return Path(path)


def write_ome_tiff(
    path: str | os.PathLike,
    data: np.ndarray,
    channel_names: list[str],
    *,
    pixel_size: PixelSize | None = None,
    overwrite: bool = False,
) -> Path:
    """Writes a (C, H, W) float32 OME-TIFF with channel names and pixel size, atomically.

    Example:
    >>> import numpy as np, tempfile, os, tifffile
    >>> p = os.path.join(tempfile.mkdtemp(), "f.ome.tif")
    >>> _ = write_ome_tiff(p, np.zeros((2, 4, 4)), ["a", "b"], pixel_size=PixelSize(0.65, 0.65))
    >>> with tifffile.TiffFile(p) as tif:
    ...     tif.series[0].axes, 'PhysicalSizeX="0.65"' in tif.ome_metadata
    ('CYX', True)
    """
    import tifffile

    data = np.asarray(data, np.float32)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3 or data.shape[0] != len(channel_names):
        raise InputError(
            f"expected (C, H, W) with C={len(channel_names)} ({channel_names}), got {data.shape}."
        )
    metadata: dict = {"axes": "CYX", "Channel": {"Name": list(channel_names)}}
    extra = {}
    if pixel_size is not None:
        unit = ome_unit(pixel_size.unit)
        metadata.update(
            PhysicalSizeX=pixel_size.x,
            PhysicalSizeXUnit=unit,
            PhysicalSizeY=pixel_size.y,
            PhysicalSizeYUnit=unit,
        )
        y_um, x_um = pixel_size.micrometers()
        extra = {"resolution": (1e4 / x_um, 1e4 / y_um), "resolutionunit": "CENTIMETER"}
    with atomic_path(path, overwrite=overwrite) as tmp:
        tifffile.imwrite(tmp, data, ome=True, photometric="minisblack", metadata=metadata, **extra)
    return Path(path)


def write_stain(
    stem: str | os.PathLike,
    result,
    targets: list[str],
    fmt: str = "tiff",
    overwrite: bool = False,
    interval: tuple[float, np.ndarray, np.ndarray] | None = None,
    *,
    pixel_size: PixelSize | None = None,
) -> list[Path]:
    """Writes a `StainResult` as ``<stem>_prediction.ome.tif`` or one ``<stem>.zarr`` image.

    Args:
        stem: output path without suffix (``out/field``; ``out/field.ome`` is cleaned to it).
        result: a `vsgan.inference.StainResult`.
        targets: the model's output channel names.
        fmt: "tiff" (one OME-TIFF holding every channel) or "zarr" (an NGFF 0.4 image).
        overwrite: replace existing files.
        interval: optional `(level, lower, upper)` (e.g. `(0.9, *result.interval(0.9))`),
            written as `<target>_lower90` / `<target>_upper90` channels.
        pixel_size: the input's physical pixel size (`vsgan.io.readers.pixel_size`), or None.

    Returns:
        The paths written.
    """
    if len(targets) != result.mean.shape[-1]:
        raise InputError(f"{len(targets)} names for {result.mean.shape[-1]} stain channels.")
    names, planes = stain_channels(result.mean, result.std, list(targets))
    if interval is not None:
        level, lower, upper = interval
        tag = f"{100 * float(level):g}"
        for kind, bound in (("lower", lower), ("upper", upper)):
            names += [f"{t}_{kind}{tag}" for t in targets]
            planes += [bound[..., i] for i in range(len(targets))]
    data = np.stack(planes).astype(np.float32, copy=False)
    if len(set(_safe_name(n) for n in names)) != len(names):
        raise InputError(
            f"output channel names {list(targets)} repeat (after making them file names): "
            "their outputs would overwrite each other. Fix: give every output channel its own "
            "name (output_channels=[...])."
        )
    stem = Path(stem)
    name = field_stem(stem.name + ".tif")  # "field.ome" -> "field"
    if fmt == "zarr":
        path = stem.with_name(name + ".zarr")
        return [ome_zarr.write_image(path, data, names, pixel_size=pixel_size, overwrite=overwrite)]
    if fmt != "tiff":
        raise InputError(f"format {fmt!r} is not supported: use 'tiff' or 'zarr'.")
    path = stem.with_name(name + "_prediction.ome.tif")
    return [write_ome_tiff(path, data, names, pixel_size=pixel_size, overwrite=overwrite)]
