"""Read microscope images of any supported format as (H, W, C) numpy arrays.

Formats: TIFF (8/16-bit, float32, multi-page and ImageJ hyperstacks, via tifffile), PNG/JPEG
(pillow; 16-bit PNG stays uint16), HDF5 datasets (``file.h5::dataset``), OME-Zarr single fields
and HCS plates (``plate.zarr::row/col/fov``), ``.npy`` files and in-memory arrays. Channels are
picked by index or by name; names match loosely (case-insensitive, either one a prefix of the
other), so "Nucl" finds "Nuclei" and "Nuclei" finds "Nucl".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vsgan.errors import DataFileError, InputError
from vsgan.io import ome_zarr
from vsgan.io.files import check_size

Channels = int | str | Sequence[int | str] | None


TIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def split_path(path: str | Path) -> tuple[Path, str | None]:
    """Splits ``"file.h5::dataset"`` / ``"plate.zarr::A/1/0"`` into the file and the inner path."""
    text = str(path)
    if "::" in text:
        outer, inner = text.split("::", 1)
        return Path(outer), inner or None
    return Path(text), None


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def resolve_channels(
    names: Sequence[str] | None, channels: Channels, n: int, where: str
) -> list[int]:
    """Turns a channel selection into indices.

    Args:
        names: the channel names of the source, or None if it has none.
        channels: None (all), an index, a name, or a list of them. A name matches when it equals a
            channel name ignoring case and punctuation, or one is a prefix of the other; it may
            match several channels (e.g. "Phase3D" matches "Phase3D/z0" .. "Phase3D/z4").
        n: the number of channels.
        where: the source, for error messages.

    Returns:
        A list of channel indices.
    """
    if channels is None:
        return list(range(n))
    if isinstance(channels, (int, np.integer, str)):
        channels = [channels]
    out: list[int] = []
    for ch in channels:
        if isinstance(ch, (int, np.integer)):
            if not -n <= int(ch) < n:
                raise InputError(
                    f"{where}: channel index {ch} out of range, it has {n} channel(s)"
                    + (f" {list(names)}" if names else "")
                    + "."
                )
            out.append(int(ch) % n)
            continue
        if names is None:
            raise InputError(
                f"{where}: channel {ch!r} asked by name, but the source has no channel names; "
                f"select by index 0..{n - 1} instead."
            )
        key = _norm(ch)
        exact = [i for i, nm in enumerate(names) if _norm(nm) == key]
        # "Phase3D" also picks the planes "Phase3D/z0", "Phase3D/z1" ...
        planes = [i for i, nm in enumerate(names) if _norm(nm.split("/z")[0]) == key]
        loose = [
            i
            for i, nm in enumerate(names)
            if key and (_norm(nm).startswith(key) or key.startswith(_norm(nm)))
        ]
        if not exact and not planes and len(loose) > 1:
            # "Nuclei" among ["Nucl", "Nuclei_mask"]: the closest length wins.
            gap = [abs(len(_norm(names[i])) - len(key)) for i in loose]
            loose = [i for i, g in zip(loose, gap) if g == min(gap)]
        hits = exact or planes or loose
        if not hits:
            raise InputError(
                f"{where}: unknown channel {ch!r}. Known channels: {list(names)}. Fix: use one of "
                "these names (a prefix is enough) or an index."
            )
        if not exact and not planes and len(hits) > 1:
            raise InputError(
                f"{where}: channel {ch!r} is ambiguous, it matches "
                f"{[names[i] for i in hits]}; give more of the name or an index."
            )
        out += hits
    return out


def _as_hwc(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.ndim == 2:
        return arr[..., np.newaxis]
    if arr.ndim == 3:
        return arr
    raise InputError(
        f"{where}: expected an (H, W) or (H, W, C) image, got shape {arr.shape}. Fix: select one "
        "field (index=...) or reshape the array."
    )


def _read_tiff(path: Path) -> tuple[np.ndarray, list[str] | None]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise DataFileError(f"{path}: TIFF holds no image series.")
        series = tif.series[0]
        check_size(series.shape, series.dtype, path)
        data = series.asarray()
        axes = series.axes.upper()
        names = None
        if tif.imagej_metadata and "Labels" in tif.imagej_metadata:
            names = list(tif.imagej_metadata["Labels"])
        elif tif.is_ome and tif.ome_metadata:  # OME-TIFF: <Channel Name="..."> of the image
            found = re.findall(r"<Channel\b[^>]*?\bName=\"([^\"]*)\"", tif.ome_metadata)
            names = found or None
    if "Y" not in axes or "X" not in axes:
        raise DataFileError(f"{path}: TIFF series axes {axes!r} have no Y and X.")
    # Every non-spatial axis (pages, Z, C, T, samples) becomes a channel, in stored order.
    order = [axes.index("Y"), axes.index("X")] + [i for i, a in enumerate(axes) if a not in "YX"]
    data = np.transpose(data, order)
    data = data.reshape(data.shape[0], data.shape[1], -1)
    if names is not None and len(names) != data.shape[-1]:
        names = None
    return data, names


def _read_pil(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            check_size((im.height, im.width, len(im.getbands())), np.uint16, path)
            if im.mode in ("P", "PA"):
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            data = np.array(im)
    except Image.DecompressionBombError as e:
        raise InputError(
            f"{path}: {e} Fix: check the file is not corrupt, or crop it into fields."
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataFileError(f"{path}: not a readable image ({e}). Fix: replace the file.") from e
    if data.dtype.byteorder == ">":  # "I;16B" -> native uint16
        data = data.astype(data.dtype.newbyteorder("="))
    return data


_H5_CACHE: dict[tuple[str, int, str], np.ndarray] = {}
_H5_CACHE_BYTES = 512 * 2**20


def read_hdf5(path: str | Path, dataset: str | None = None, index: int | None = None) -> np.ndarray:
    """Reads an HDF5 dataset (or item `index` along its first axis) as a numpy array.

    Whole datasets up to 512 MiB are read once and kept, so reading thousands of small crops
    one index at a time stays fast.
    """
    import h5py

    path = Path(path)
    # Keyed by modification time too, so a rewritten file is read again.
    stamp = (str(path.resolve()), path.stat().st_mtime_ns if path.exists() else 0)
    if dataset is not None and (*stamp, dataset) in _H5_CACHE:
        data = _H5_CACHE[(*stamp, dataset)]
        return data if index is None else data[index]
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DataFileError(
            f"{path}: cannot open as HDF5 ({e}). Fix: check the file is complete (not truncated)."
        ) from e
    with f:
        keys: list[str] = []
        f.visititems(lambda k, v: keys.append(k) if isinstance(v, h5py.Dataset) else None)
        if dataset is None:
            if len(keys) != 1:
                raise InputError(
                    f"{path}: holds datasets {keys}; name one as '{path}::name' or dataset='name'."
                )
            dataset = keys[0]
        if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
            raise InputError(f"{path}: no dataset {dataset!r}. Known datasets: {keys}.")
        ds = f[dataset]
        if ds.size == 0:
            raise DataFileError(f"{path}::{dataset} is empty (shape {ds.shape}).")
        if index is not None and not (ds.ndim and -ds.shape[0] <= index < ds.shape[0]):
            raise InputError(f"{path}::{dataset}: index {index} out of range for shape {ds.shape}.")
        check_size(ds.shape if index is None else ds.shape[1:], ds.dtype, f"{path}::{dataset}")
        key = (*stamp, dataset)
        if key not in _H5_CACHE and index is not None and ds.nbytes <= _H5_CACHE_BYTES:
            while len(_H5_CACHE) >= 8:  # a few stacks at most, oldest out first
                _H5_CACHE.pop(next(iter(_H5_CACHE)))
            _H5_CACHE[key] = ds[()]
        if key in _H5_CACHE:
            data = _H5_CACHE[key]
            return data if index is None else data[index]
        try:
            return ds[()] if index is None else ds[index]
        except (OSError, ValueError, RuntimeError) as e:  # corrupt chunks, bad filters
            raise DataFileError(
                f"{path}::{dataset}: cannot read its data ({e}). Fix: the file is damaged or "
                "truncated; copy it again."
            ) from None


def read_image_with_names(
    source: str | Path | np.ndarray,
    *,
    dataset: str | None = None,
    index: int | None = None,
    position: str | None = None,
    z: int | None = None,
) -> tuple[np.ndarray, list[str] | None]:
    """Reads every channel of `source` as (H, W, C) plus its channel names (None if unnamed).

    Same arguments as `read_image`, without the channel selection.
    """
    if isinstance(source, np.ndarray):
        data = source if index is None else source[index]
        return _as_hwc(data, "array"), None
    path, inner = split_path(source)
    where = str(source)
    if not path.exists():
        raise DataFileError(f"{path}: no such file or folder. Fix: check the path.")
    suffix = path.suffix.lower()
    names = None
    is_zarr = suffix == ".zarr" or (
        path.is_dir() and any((path / m).exists() for m in (".zattrs", ".zgroup", "zarr.json"))
    )
    if not is_zarr and path.is_file() and path.stat().st_size == 0:
        raise DataFileError(f"{path}: the file is empty (0 bytes). Fix: copy it again.")
    if is_zarr:
        try:
            data, names = ome_zarr.read_field(path, position or inner, z=z)
        except (DataFileError, InputError):
            raise
        except Exception as e:  # zarr raises many types on damaged metadata
            raise DataFileError(
                f"{path}: not a readable OME-Zarr field ({type(e).__name__}: {e}). Fix: the "
                "store's metadata is damaged or incomplete; copy it again."
            ) from None
    elif suffix in TIFF_SUFFIXES:
        try:
            data, names = _read_tiff(path)
        except (DataFileError, InputError):
            raise
        except Exception as e:  # tifffile raises many types on corrupt files
            raise DataFileError(f"{path}: not a readable TIFF ({e}). Fix: replace the file.") from e
        if index is not None:
            if not -data.shape[-1] <= index < data.shape[-1]:
                raise InputError(f"{path}: page {index} out of range, it has {data.shape[-1]}.")
            data = data[..., [index]]
    elif suffix in PIL_SUFFIXES:
        data = _read_pil(path)
    elif suffix in HDF5_SUFFIXES:
        data = read_hdf5(path, dataset or inner, index)
    elif suffix == ".npy":
        try:
            data = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise DataFileError(
                f"{path}: not a readable .npy file of numbers ({type(e).__name__}). Fix: "
                "re-save the image with numpy.save(path, array) (numeric arrays only)."
            ) from None
        if index is not None:
            if not (data.ndim and -data.shape[0] <= index < data.shape[0]):
                raise InputError(f"{path}: index {index} out of range for shape {data.shape}.")
            data = data[index]
        check_size(data.shape, data.dtype, path)
        data = np.asarray(data)
    else:
        raise DataFileError(
            f"{path}: unsupported format {suffix!r}. Supported: TIFF, PNG/JPEG, HDF5 (.h5), "
            "OME-Zarr (.zarr) and .npy."
        )
    return _as_hwc(np.asarray(data), where), names


def read_image(
    source: str | Path | np.ndarray,
    channels: Channels = None,
    *,
    dataset: str | None = None,
    index: int | None = None,
    position: str | None = None,
    z: int | None = None,
    allow_nan: bool = False,
) -> np.ndarray:
    """Reads an image as an (H, W, C) array in its stored dtype.

    Args:
        source: a file path, ``"file.h5::dataset"``, ``"plate.zarr::row/col/fov"``, or an
            (H, W) / (H, W, C) numpy array.
        channels: None for all channels, or an index, a name, or a list of them. Names come from
            OMERO metadata (OME-Zarr), ImageJ labels (TIFF) or are unavailable.
        dataset: HDF5 dataset name, instead of the ``::`` suffix.
        index: an item along the first axis of an HDF5 / .npy stack (N, H, W[, C]), or a page
            of a multi-page TIFF.
        position: OME-Zarr plate position ``row/col/fov``, instead of the ``::`` suffix.
        z: OME-Zarr Z plane; None keeps all planes as channels.
        allow_nan: keep NaN / inf values instead of raising.

    Returns:
        np.ndarray (H, W, C), uint8 / uint16 / float32 ... as stored.

    Example:
    >>> import numpy as np
    >>> read_image(np.zeros((4, 5), "uint16")).shape
    (4, 5, 1)
    """
    data, names = read_image_with_names(
        source, dataset=dataset, index=index, position=position, z=z
    )
    where = source if not isinstance(source, np.ndarray) else "array"
    if data.dtype.kind not in "biuf":
        raise InputError(
            f"{where}: holds {data.dtype} values, not real numbers. Fix: store the image as an "
            "integer (e.g. uint16) or float32 array."
        )
    idx = resolve_channels(names, channels, data.shape[-1], str(where))
    if idx != list(range(data.shape[-1])):
        data = data[..., idx]
    if 0 in data.shape:
        raise DataFileError(
            f"{where}: the image is empty (shape {data.shape}). Fix: give an image with pixels."
        )
    if not allow_nan and np.issubdtype(data.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise InputError(
                f"{where}: {bad} NaN/inf pixel(s). Fix: fill them (e.g. np.nan_to_num) or mask "
                "them out before training; pass allow_nan=True to read them anyway."
            )
    return data


def channel_names(source: str | Path, **kwargs) -> list[str] | None:
    """The channel names of `source` (OMERO labels, ImageJ labels) or None if it has none."""
    path, inner = split_path(source)
    if (
        path.suffix.lower() == ".zarr"
        or (path / ".zattrs").exists()
        or (path / "zarr.json").exists()
    ):
        return ome_zarr.field_channel_names(path, kwargs.get("position") or inner)
    return read_image_with_names(source, **kwargs)[1]
