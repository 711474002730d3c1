"""napari reader for OME-TIFF (vsgan's `<field>_prediction.ome.tif` and others).

One layer per channel, named by the OME `Channel Name`, scaled by `PhysicalSizeX/Y` (and Z),
coloured by channel name (`vsgan.napari.layers`). OME-Zarr outputs need no reader of ours:
napari-ome-zarr opens them (tests/test_napari.py checks channel names and scale).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from vsgan.napari.layers import image_kwargs

LayerData = tuple[Any, dict[str, Any], str]

_UNITS = {"µm": "micrometer", "um": "micrometer", "nm": "nanometer", "mm": "millimeter"}


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _ome_pixels(tif) -> dict[str, Any] | None:
    import tifffile

    if not tif.is_ome or not tif.ome_metadata:
        return None
    meta = tifffile.xml2dict(tif.ome_metadata).get("OME", {})
    images = _as_list(meta.get("Image", []))
    return images[0].get("Pixels") if images else None


def napari_get_reader(path: str | list[str]) -> Callable[[str], list[LayerData]] | None:
    """The reader for an OME-TIFF path, or None (napari then asks another plugin)."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not str(path).lower().endswith((".ome.tif", ".ome.tiff")) or not os.path.isfile(path):
        return None
    return read_ome_tiff


def read_ome_tiff(path: str | list[str]) -> list[LayerData]:
    """Layers of an OME-TIFF: one image layer per channel with its name, scale and colours."""
    import tifffile

    if isinstance(path, list):
        path = path[0]
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes = series.axes.upper()
        data = series.asarray()
        pixels = _ome_pixels(tif) or {}
    names = [c.get("Name") for c in _as_list(pixels.get("Channel", []))]
    sizes = {a: float(pixels.get(f"PhysicalSize{a}", 1.0) or 1.0) for a in "ZYX"}
    unit = str(pixels.get("PhysicalSizeXUnit", "µm"))
    # Drop singleton axes other than Y and X; keep the channel axis apart.
    for ax in [a for a in axes if a not in "CYX" and data.shape[axes.index(a)] == 1]:
        data = np.take(data, 0, axis=axes.index(ax))
        axes = axes.replace(ax, "")
    if "C" in axes:
        data = np.moveaxis(data, axes.index("C"), 0)
        axes = "C" + axes.replace("C", "")
    else:
        data, axes = data[None], "C" + axes
    stem = os.path.basename(str(path)).split(".")[0]
    scale = tuple(sizes.get(a, 1.0) for a in axes[1:])
    sized = "PhysicalSizeX" in pixels
    units = tuple(_UNITS.get(unit, unit) if sized and a in "ZYX" else "pixel" for a in axes[1:])
    layers = []
    for i, plane in enumerate(data):
        name = names[i] if i < len(names) and names[i] else f"{stem}_c{i}"
        kwargs = image_kwargs(name, plane, scale=scale, units=units)
        kwargs["metadata"] = {"path": str(path), "channel": i, "axes": axes[1:]}
        layers.append((plane, kwargs, "image"))
    return layers
