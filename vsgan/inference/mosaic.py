"""Staining mosaics larger than memory: tiles stream from disk into an OME-Zarr on disk.

`stain_mosaic` gives the same result as `vsgan.inference.stain.stain` on the whole field (same
tiles, same per-field normalisation, same blending, same float32 arithmetic in the same order),
but never holds the field: the input is read tile by tile from an OME-Zarr field or a (tiled)
TIFF, the blending accumulators live in a scratch zarr store beside the output, and the final
division is written block by block (`BLOCK` x `BLOCK` pixels, the output's chunks). Peak
memory is a batch of tiles plus a block, whatever the field's height and width.

The per-field input normalisation is fitted as `stain` fits it: quantiles from the same evenly
strided pixels of the flattened field (at most a million per channel, gathered block by
block), mean and standard deviation from running sums.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from vsgan.errors import DataFileError, InputError

__all__ = ["BLOCK", "LazyField", "open_field", "stain_mosaic"]

# Side of the blocks read or written at once besides the tiles (and of the output's chunks).
BLOCK = 1024


class LazyField:
    """A field on disk read in (rows, columns) windows as (h, w, C) arrays.

    Attributes:
        shape: (H, W, C) of the selected channels.
        names: the source's channel names (or None), before selection.
        pixel_size: the physical pixel size, or None.
    """

    def __init__(self, array, axes: str, names, pixel_size, where: str):
        self._array, self._axes, self.where = array, axes.upper(), where
        if "Y" not in self._axes or "X" not in self._axes or len(self._axes) != array.ndim:
            raise DataFileError(f"{where}: array of shape {array.shape} has axes {axes!r}.")
        others = [i for i, a in enumerate(self._axes) if a not in "YX" and a != "T"]
        self._order = [self._axes.index("Y"), self._axes.index("X")]
        self._others = others
        n = int(np.prod([array.shape[i] for i in others], dtype=np.int64))
        self.names = names if names is not None and len(names) == n else None
        self.pixel_size = pixel_size
        self._channels = list(range(n))
        self.full_channels = n
        self.shape = (array.shape[self._order[0]], array.shape[self._order[1]], n)
        self.dtype = array.dtype

    def select(self, channels: list[int]) -> LazyField:
        """Keeps the given channel indices (in that order)."""
        self._channels = list(channels)
        self.shape = (*self.shape[:2], len(channels))
        return self

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Rows y0:y1 and columns x0:x1 of the selected channels, (h, w, C)."""
        index = []
        for a in self._axes:
            if a == "T":
                index.append(0)
            elif a == "Y":
                index.append(slice(y0, y1))
            elif a == "X":
                index.append(slice(x0, x1))
            else:
                index.append(slice(None))
        try:
            data = np.asarray(self._array[tuple(index)])
        except Exception as e:  # codecs and stores raise many types on damaged chunks
            raise DataFileError(
                f"{self.where}: cannot read rows {y0}-{y1}, columns {x0}-{x1} "
                f"({type(e).__name__}: {e}). Fix: the file is damaged or incomplete."
            ) from None
        kept = [i for i, a in enumerate(self._axes) if a != "T"]
        order = [kept.index(i) for i in self._order + self._others]
        data = np.transpose(data, order).reshape(y1 - y0, x1 - x0, self.full_channels)
        if self._channels != list(range(self.full_channels)):
            data = data[..., self._channels]
        return data


def open_field(source: str | os.PathLike, position: str | None = None) -> LazyField:
    """Opens an OME-Zarr field (``plate.zarr::row/col/fov`` too) or a TIFF for tile reads."""
    import zarr

    from vsgan.io import ome_zarr
    from vsgan.io.readers import TIFF_SUFFIXES, pixel_size, split_path

    path, inner = split_path(source)
    position = position or inner
    if not path.exists():
        raise DataFileError(f"{path}: no such file or folder. Fix: check the path.")
    if path.suffix.lower() == ".zarr" or ome_zarr.looks_like_zarr(path):
        group = ome_zarr._field_group(path, position)
        array = group["0"]
        axes = ome_zarr._axes(group, array.ndim)
        names = ome_zarr.field_channel_names(path, position)
        nz = array.shape[axes.index("Z")] if "Z" in axes else 1
        if names is not None and nz > 1:
            names = [f"{n}/z{k}" for n in names for k in range(nz)]
        where = f"{path}::{position}" if position else str(path)
        return LazyField(array, axes, names, pixel_size(path, position), where)
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            names = None
            if tif.imagej_metadata and "Labels" in tif.imagej_metadata:
                names = list(tif.imagej_metadata["Labels"])
        array = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
        if isinstance(array, zarr.Group):  # a pyramid: level 0 is full resolution
            array = array["0"]
        return LazyField(array, axes.replace("S", "C"), names, pixel_size(path), str(path))
    raise InputError(
        f"{path}: mosaics stream from OME-Zarr fields or TIFF files, not {path.suffix!r}."
    )


def _blocks(height: int, width: int):
    for y0 in range(0, height, BLOCK):
        for x0 in range(0, width, BLOCK):
            yield y0, min(height, y0 + BLOCK), x0, min(width, x0 + BLOCK)


def _strided(y0: int, y1: int, x0: int, x1: int, width: int, step: int):
    """(rows, columns) inside a block of the flat indices 0, step, 2 step ... of the field."""
    starts = np.arange(y0, y1, dtype=np.int64) * width
    first = -(-(starts + x0) // step) * step
    flat = [np.arange(f, s + x1, step, dtype=np.int64) for f, s in zip(first, starts)]
    flat = np.concatenate(flat) if flat else np.zeros(0, np.int64)
    return flat // width - y0, flat % width - x0


def _field_normalization(preprocessor, field: LazyField):
    """`preprocessor.for_field(whole field)`, computed from blocks of the field."""
    from vsgan.data.normalize import _MAX_SAMPLES_PER_FIELD

    norm = preprocessor.input
    if not norm.per_field or norm.method in ("fixed", "identity"):
        return norm
    h, w, c = field.shape
    if norm.method == "meanstd":
        from vsgan.data.normalize import Normalization, _as_list, _safe_scale

        total, total_sq = np.zeros(c), np.zeros(c)
        for y0, y1, x0, x1 in _blocks(h, w):
            f64 = field.read(y0, y1, x0, x1).reshape(-1, c).astype(np.float64)
            total, total_sq = total + f64.sum(0), total_sq + (f64**2).sum(0)
        mean = total / (h * w)
        fitted = Normalization(norm.method, low=norm.low, high=norm.high)
        fitted.offset = _as_list(mean)
        fitted.scale = _as_list(_safe_scale(np.sqrt(np.maximum(total_sq / (h * w) - mean**2, 0))))
        return fitted
    # The same evenly strided pixels `fit` takes from the flattened (H*W, C) field (quantiles
    # do not depend on their order).
    step = max(1, (h * w) // _MAX_SAMPLES_PER_FIELD)
    picked = []
    for y0, y1, x0, x1 in _blocks(h, w):
        rows, cols = _strided(y0, y1, x0, x1, w, step)
        if rows.size:
            picked.append(field.read(y0, y1, x0, x1)[rows, cols])
    sample = np.concatenate(picked)[:, None, :]
    # `fit` on the sample takes every pixel of it (fewer than twice its cap), as on the field.
    return preprocessor.for_field(sample)


def _read_tile(field: LazyField, y0: int, x0: int, th: int, tw: int) -> np.ndarray:
    h, w, _ = field.shape
    tile = field.read(y0, min(h, y0 + th), x0, min(w, x0 + tw))
    if tile.shape[:2] != (th, tw):  # a field smaller than a tile: mirrored like `stain`
        tile = np.pad(
            tile, ((0, th - tile.shape[0]), (0, tw - tile.shape[1]), (0, 0)), mode="symmetric"
        )
    return tile


def _select_channels(field: LazyField, model) -> LazyField:
    from vsgan.io.readers import resolve_channels

    wanted = list(getattr(model, "input_channels", []) or [])
    n_in = int(model.in_channels)
    if field.names is not None and wanted:
        try:
            return field.select(resolve_channels(field.names, wanted, field.shape[-1], field.where))
        except InputError:
            if field.shape[-1] != n_in:
                raise
    if field.shape[-1] != n_in:
        raise InputError(
            f"{field.where}: {field.shape[-1]} channel(s) but the model takes {n_in} "
            f"({', '.join(wanted)}). Fix: name the channels in the file's metadata."
        )
    return field


def stain_mosaic(
    model: Any,
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    position: str | None = None,
    samples: int = 1,
    tile_size: int | None = None,
    overlap: int | None = None,
    tta: bool = False,
    batch_size: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    precision: str | None = None,
) -> Path:
    """Stains a field on disk into an OME-Zarr image on disk, in memory flat in the field size.

    Args:
        model: a `vsgan.Pix2PixHD`.
        source: an OME-Zarr field (or ``plate.zarr::row/col/fov``) or a TIFF (tiled TIFFs
            read fastest); channels are matched to the model's inputs by name.
        output: the ``.zarr`` image to write (NGFF 0.4, channels ``<target>_prediction`` and
            ``<target>_std``, the input's pixel size), written atomically.
        position: the field of a plate, instead of the ``::`` suffix.
        samples: Monte-Carlo samples, as in `vsgan.inference.stain.stain`.
        tile_size: tile side, as in `stain`.
        overlap: tile overlap, as in `stain`.
        tta: test-time augmentation, as in `stain`.
        batch_size: images per generator call, as in `stain`.
        precision: compute precision, as in `stain` (default: the machine's fast one).
        overwrite: replace an existing `output`.
        progress: show a progress bar over tiles.

    Returns:
        The output path.

    Example:
    >>> import numpy as np, tempfile, os, tifffile
    >>> from vsgan import Pix2PixHD
    >>> model = Pix2PixHD(1, 1, ngf=8, n_downsample=2, n_blocks=1)
    >>> folder = tempfile.mkdtemp()
    >>> tifffile.imwrite(os.path.join(folder, "big.tif"), np.ones((100, 150), "uint16"))
    >>> out = stain_mosaic(model, os.path.join(folder, "big.tif"), os.path.join(folder, "o.zarr"),
    ...                    tile_size=64)
    >>> out.name
    'o.zarr'
    """
    import zarr

    from vsgan.inference import stain as st
    from vsgan.io import ome_zarr
    from vsgan.io.files import atomic_path

    samples = st._whole(samples, "samples")
    batch_size = st._whole(batch_size or st.DEFAULT_BATCH_SIZE, "batch_size")
    field = _select_channels(open_field(source, position), model)
    if field.dtype.kind not in "biuf":
        raise InputError(f"{field.where}: holds {field.dtype} values, not numbers.")
    height, width, _ = field.shape
    multiple = int(getattr(model, "multiple", 1) or 1)
    grid = st.tile_grid(height, width, tile_size, overlap, multiple)
    (th, tw), (hp, wp) = grid.tile_shape, grid.padded_shape
    to_model = _field_normalization(model.preprocessor, field).normalize
    to_target = model.preprocessor.denormalize_target

    views = st._VIEWS if tta else st._VIEWS[:1]
    with_std = samples > 1 or tta
    chunk = min(samples, batch_size)
    tiles_per_call = max(1, batch_size // chunk)
    run = st._runner(model, samples, st.resolve_precision(precision))
    c_out = int(model.out_channels)
    targets = list(model.output_channels)
    names = [f"{t}_prediction" for t in targets] + (
        [f"{t}_std" for t in targets] if with_std else []
    )
    wy, wx = st._axis_weights(grid.y_starts, th), st._axis_weights(grid.x_starts, tw)
    tiles = [
        (y0, x0, i, j) for i, y0 in enumerate(grid.y_starts) for j, x0 in enumerate(grid.x_starts)
    ]

    output = Path(output)
    with atomic_path(output, overwrite=overwrite, folder=True) as tmp:
        scratch_path = tmp.with_name(tmp.name + "-scratch")
        try:
            scratch = zarr.open_group(str(scratch_path), mode="w", zarr_format=2)
            block = (min(hp, 512), min(wp, 512))
            opts = {"dtype": "float32", "fill_value": 0.0, "compressors": None}
            image = {"shape": (hp, wp, c_out), "chunks": (*block, c_out), **opts}
            mean_acc = scratch.create_array("mean", **image)
            var_acc = scratch.create_array("var", **image) if with_std else None
            weight_acc = scratch.create_array("weight", shape=(hp, wp), chunks=block, **opts)

            with tqdm(total=len(tiles), disable=not progress, desc="mosaic", unit="tile") as bar:
                for first in range(0, len(tiles), tiles_per_call):
                    batch = tiles[first : first + tiles_per_call]
                    xb = np.stack([_read_tile(field, y0, x0, th, tw) for y0, x0, _, _ in batch])
                    xb = np.asarray(to_model(xb), np.float32)
                    moments = st._Moments()
                    for view in views:
                        xv = st._forward(xb, view)
                        for done in range(0, samples, chunk):
                            y = run(xv, min(chunk, samples - done))
                            moments.update(to_target(st._inverse(y, view)).astype(np.float64))
                    var = moments.m2 / (moments.count - 1) if with_std else None
                    for k, (y0, x0, i, j) in enumerate(batch):
                        # The same float32 updates, in the same order, as `stain`'s arrays.
                        w = np.outer(wy[i], wx[j])
                        region = (slice(y0, y0 + th), slice(x0, x0 + tw))
                        acc = mean_acc[region]
                        acc += w[..., None] * moments.mean[k]
                        mean_acc[region] = acc
                        if with_std:
                            acc = var_acc[region]
                            acc += w[..., None] * var[k]
                            var_acc[region] = acc
                        acc = weight_acc[region]
                        acc += w
                        weight_acc[region] = acc
                    bar.update(len(batch))

            group = zarr.open_group(str(tmp), mode="w", zarr_format=2)
            out = ome_zarr.create_image(
                group,
                (1, len(names), 1, height, width),
                names,
                pixel_size=field.pixel_size,
                chunks=(1, 1, 1, min(height, BLOCK), min(width, BLOCK)),
                name=output.stem,
            )
            stats = _WindowStats(len(names), height * width)
            for y0, y1, x0, x1 in _blocks(height, width):
                weight = weight_acc[y0:y1, x0:x1][..., None]
                mean = np.ascontiguousarray(mean_acc[y0:y1, x0:x1])
                mean /= weight
                planes = [mean]
                if with_std:
                    std = np.ascontiguousarray(var_acc[y0:y1, x0:x1])
                    std /= weight
                    np.sqrt(np.maximum(std, 0.0, out=std), out=std)
                    planes.append(std)
                data = np.moveaxis(np.concatenate(planes, axis=-1), -1, 0)
                out[0, :, 0, y0:y1, x0:x1] = data
                stats.update(data, y0, y1, x0, x1, width)
            ome_zarr.finish_image(group, names, stats.windows())
        finally:
            shutil.rmtree(scratch_path, ignore_errors=True)
    return output


class _WindowStats:
    """OMERO windows from bands: exact min/max, percentiles of evenly strided pixels."""

    def __init__(self, channels: int, pixels: int):
        self.step = max(1, pixels // 1_000_000)
        self.low = np.full(channels, np.inf)
        self.high = np.full(channels, -np.inf)
        self.picked: list[np.ndarray] = []

    def update(self, data: np.ndarray, y0: int, y1: int, x0: int, x1: int, width: int):
        flat = data.reshape(data.shape[0], -1)  # data: (C, h, w) of the block
        self.low = np.minimum(self.low, np.nanmin(flat, axis=1))
        self.high = np.maximum(self.high, np.nanmax(flat, axis=1))
        rows, cols = _strided(y0, y1, x0, x1, width, self.step)
        self.picked.append(data[:, rows, cols])

    def windows(self) -> list[dict[str, float]]:
        sample = np.concatenate(self.picked, axis=1)
        out = []
        for c in range(sample.shape[0]):
            lo, hi = float(self.low[c]), float(self.high[c])
            start, end = (float(v) for v in np.nanpercentile(sample[c], [0.1, 99.9]))
            hi = hi if hi > lo else lo + 1.0
            if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
                start, end = lo, hi
            out.append({"min": lo, "max": hi, "start": start, "end": end})
        return out
