"""Read microscope images of any supported format as (H, W, C) numpy arrays.

Physical pixel sizes come from OME-XML, ImageJ metadata, TIFF resolution tags or OME-Zarr
``coordinateTransformations`` (`pixel_size`), so outputs can carry them on.

Formats: TIFF (8/16-bit, float32, multi-page and ImageJ hyperstacks, via tifffile), PNG/JPEG
(pillow; 16-bit PNG stays uint16), HDF5 datasets (``file.h5::dataset``), OME-Zarr single fields
and HCS plates (``plate.zarr::row/col/fov``), ``.npy`` files and in-memory arrays. Channels are
picked by index or by name; names match loosely (case-insensitive, either one a prefix of the
other), so "Nucl" finds "Nuclei" and "Nuclei" finds "Nucl".
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vsgan.errors import DataFileError, InputError
from vsgan.io import ome_zarr
from vsgan.io.files import check_size
from vsgan.io.metadata import PixelSize, ngff_unit

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
    if isinstance(channels, (int, np.integer, str)) or not isinstance(channels, Sequence):
        channels = [channels]
    out: list[int] = []
    for ch in channels:
        if isinstance(ch, bool) or not isinstance(ch, int | np.integer | str):
            raise InputError(
                f"{where}: channel {ch!r} is neither an index nor a name. Fix: give channel "
                "indices (0, 1, ...) or names, or a list of them."
            )
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


def _read_tiff(path: Path, series: str | None = None) -> tuple[np.ndarray, list[str] | None]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise DataFileError(f"{path}: TIFF holds no image series.")
        if series is None and len(tif.series) > 1:
            listed = ", ".join(
                f"{i}: {s.name or 'unnamed'} {tuple(s.shape)}" for i, s in enumerate(tif.series[:8])
            )
            raise InputError(
                f"{path}: holds {len(tif.series)} image series ({listed}"
                f"{', ...' if len(tif.series) > 8 else ''}); vsgan does not guess which one. "
                f"Fix: pick one as '{path}::<series index>', e.g. '{path}::0'."
            )
        index = 0
        if series is not None:
            try:
                index = int(series)
            except ValueError:
                raise InputError(
                    f"{path}::{series}: a TIFF series is chosen by its index 0..."
                    f"{len(tif.series) - 1}, e.g. '{path}::0'."
                ) from None
            if not 0 <= index < len(tif.series):
                raise InputError(
                    f"{path}::{series}: no such series; the file has {len(tif.series)}. "
                    f"Fix: give an index 0..{len(tif.series) - 1}."
                )
        series = tif.series[index]
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


def _png_header(path: Path) -> tuple[int, int, int, int] | None:
    """(height, width, bit depth, colour type) from a PNG's IHDR, or None if not a PNG."""
    with open(path, "rb") as f:
        head = f.read(29)
    if len(head) < 29 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return height, width, head[24], head[25]


def _read_png16(path: Path, height: int, width: int, colour: int) -> np.ndarray:
    """A 16-bit RGB, RGBA or gray+alpha PNG at full depth (pillow would cut it to 8 bits)."""
    try:
        import imagecodecs
    except ImportError:
        raise DataFileError(
            f"{path}: a 16-bit colour PNG needs the imagecodecs package to be read at full "
            "depth. Fix: pip install imagecodecs (a vsgan dependency)."
        ) from None
    channels = {2: 3, 4: 2, 6: 4}[colour]
    check_size((height, width, channels), np.uint16, path)
    try:
        data = imagecodecs.png_decode(path.read_bytes())
    except Exception as e:  # imagecodecs raises its own error types on damaged files
        raise DataFileError(
            f"{path}: not a readable PNG ({type(e).__name__}: {e}). Fix: replace the file."
        ) from None
    if data.dtype != np.uint16 or data.shape[:2] != (height, width):
        raise DataFileError(f"{path}: decoded as {data.dtype} {data.shape}, not its header's.")
    return data


def _read_pil(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    header = _png_header(path)
    if header is not None and header[2] == 16 and header[3] in (2, 4, 6):
        return _read_png16(path, header[0], header[1], header[3])
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
        _refuse_outside_links(f, dataset, path)
        if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
            raise InputError(f"{path}: no dataset {dataset!r}. Known datasets: {keys}.")
        ds = _open_confined(f, dataset, path)
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


def _inside(folder: Path, name: str | bytes) -> bool:
    name = os.fsdecode(name)
    if name in ("", "."):  # the file itself (virtual sources in the same file)
        return True
    target = Path(name)
    if target.is_absolute() or ".." in target.parts:
        return False
    return (folder / target).resolve().is_relative_to(folder.resolve())


def _outside(path: Path, dataset: str, where: str, name: str | bytes) -> DataFileError:
    return DataFileError(
        f"{path}::{dataset}: its data {where} '{os.fsdecode(name)}', outside the folder of "
        f"the HDF5 file ({path.parent}); vsgan reads no file the dataset does not hold. Fix: "
        "copy the data into the HDF5 file (e.g. h5py: f2[name] = f[name][()]) or put the "
        "referenced files beside it under relative names."
    )


def _refuse_outside_links(f, dataset: str, path: Path) -> None:
    """Refuses external links on the way to `dataset` that leave the file's folder."""
    import h5py

    parts = [p for p in dataset.split("/") if p]
    for k in range(1, len(parts) + 1):
        sub = "/".join(parts[:k])
        try:
            link = f.get(sub, getlink=True)
        except (KeyError, ValueError, OSError, RuntimeError):
            return
        if isinstance(link, h5py.ExternalLink) and not _inside(path.parent, link.filename):
            raise _outside(path, dataset, "is an external link to", link.filename)


def _open_confined(f, dataset: str, path: Path):
    """The dataset, opened so that external and virtual storage resolve beside the file.

    External raw storage and virtual-dataset sources naming files outside the HDF5 file's
    folder (absolute paths, '..') are refused before any of their bytes are read.
    """
    import h5py

    # HDF5 resolves relative names against the working directory: pin them to the file's.
    dapl = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
    folder = os.fsencode(str(path.parent.resolve()))
    dapl.set_efile_prefix(folder)
    dapl.set_virtual_prefix(folder)
    ds = h5py.Dataset(h5py.h5d.open(f.id, dataset.encode(), dapl=dapl))
    external = ds.external or []
    for name, *_ in external:
        if not _inside(path.parent, name):
            raise _outside(path, dataset, "is stored in the external file", name)
    virtual = ds.is_virtual
    if virtual:
        for source in ds.virtual_sources():
            if not _inside(path.parent, source.file_name):
                raise _outside(path, dataset, "maps the virtual source", source.file_name)
    return ds


def _check_float32_range(data: np.ndarray, where) -> None:
    """Refuses values float32 cannot hold: vsgan computes in float32 (they would be inf)."""
    if data.dtype.kind != "f" or data.dtype.itemsize <= 4 or data.size == 0:
        return
    finite = data[np.isfinite(data)]
    if finite.size and float(np.abs(finite).max()) > float(np.finfo(np.float32).max):
        raise InputError(
            f"{where}: holds values up to {float(np.abs(finite).max()):.3g}, beyond float32's "
            f"range (±{float(np.finfo(np.float32).max):.3g}) in which vsgan computes. Fix: "
            "rescale the image (e.g. divide by a constant) or store it in the units the "
            "microscope recorded."
        )


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
    if index is not None and (isinstance(index, bool) or not isinstance(index, int | np.integer)):
        raise InputError(f"index={index!r}: give a whole number (an item of the stack).")
    if isinstance(source, np.ndarray):
        if index is not None and not (source.ndim and -source.shape[0] <= index < source.shape[0]):
            raise InputError(f"array: index {index} out of range for shape {source.shape}.")
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
            data, names = _read_tiff(path, inner)
        except (DataFileError, InputError):
            raise
        except Exception as e:  # tifffile raises many types on corrupt files
            if "imagecodecs" in str(e):  # a valid file in a compression numpy cannot decode
                raise DataFileError(
                    f"{path}: the TIFF is compressed in a way that needs the imagecodecs "
                    f"package ({e}). Fix: pip install imagecodecs (a vsgan dependency)."
                ) from None
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
    _check_float32_range(data, where)
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


def _ome_pixel_size(xml: str) -> PixelSize | None:
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None or "PhysicalSizeX" not in pixels.attrib:
        return None
    a = pixels.attrib
    unit = a.get("PhysicalSizeXUnit", "\u00b5m")  # the OME default
    if a.get("PhysicalSizeYUnit", unit) != unit:
        return None
    z = a.get("PhysicalSizeZ") if a.get("PhysicalSizeZUnit", unit) == unit else None
    return PixelSize.parse(a.get("PhysicalSizeY", a["PhysicalSizeX"]), a["PhysicalSizeX"], unit, z)


def _resolution(page) -> tuple[float, float] | None:
    """(y, x) pixels per unit from the resolution tags, or None when absent or (1, 1)."""
    values = []
    for tag in ("YResolution", "XResolution"):
        t = page.tags.get(tag)
        if t is None:
            return None
        num, den = t.value if isinstance(t.value, tuple) else (t.value, 1)
        if not num or not den:
            return None
        values.append(num / den)
    return tuple(values)


def _tiff_pixel_size(tif) -> PixelSize | None:
    if tif.is_ome and tif.ome_metadata:
        found = _ome_pixel_size(tif.ome_metadata)
        if found is not None:
            return found
    page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
    res = _resolution(page)
    if tif.is_imagej and tif.imagej_metadata:
        ij = tif.imagej_metadata
        unit = ngff_unit(ij.get("unit"))
        if unit is not None and res is not None:
            return PixelSize.parse(1 / res[0], 1 / res[1], unit, ij.get("spacing"))
        return None
    unit_tag = page.tags.get("ResolutionUnit")
    # 2: inch, 3: centimeter; 1 (none) or a missing tag carries no physical size.
    unit = {2: "inch", 3: "centimeter"}.get(int(unit_tag.value) if unit_tag else 2)
    if res is None or unit is None or res == (1.0, 1.0):
        return None
    found = PixelSize.parse(1 / res[0], 1 / res[1], unit)
    if found is None:
        return None
    y, x = found.micrometers()
    return PixelSize(y, x, "micrometer")


def pixel_size(source: str | Path, position: str | None = None) -> PixelSize | None:
    """The physical pixel size stored with an image, or None when it does not say.

    TIFF: OME-XML ``PhysicalSizeX/Y`` (with their unit), else ImageJ's ``unit`` with the
    resolution tags, else resolution tags with a centimeter or inch unit (given in
    micrometers). OME-Zarr: the ``scale`` of the full-resolution dataset with the axes' unit.

    Example:
    >>> import numpy as np, tempfile, os, tifffile
    >>> p = os.path.join(tempfile.mkdtemp(), "f.tif")
    >>> px = 1 / 0.65  # pixels per micrometer
    >>> tifffile.imwrite(p, np.zeros((4, 4), "uint16"), imagej=True, resolution=(px, px),
    ...                  metadata={"unit": "um"})
    >>> pixel_size(p)
    PixelSize(y=0.65, x=0.65, unit='micrometer', z=None)
    """
    path, inner = split_path(source)
    suffix = path.suffix.lower()
    if suffix == ".zarr" or (path.is_dir() and ome_zarr.looks_like_zarr(path)):
        return ome_zarr.field_pixel_size(path, position or inner)
    if suffix in TIFF_SUFFIXES:
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                return _tiff_pixel_size(tif)
        except Exception as e:  # tifffile raises many types on corrupt files
            raise DataFileError(f"{path}: not a readable TIFF ({e}). Fix: replace the file.") from e
    return None


def field_stem(path: str | Path) -> str:
    """The name of a field from its file: ``field.ome.tif`` -> ``field``, ``a.zarr`` -> ``a``."""
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", *TIFF_SUFFIXES, ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def pixel_size_for(name: str, inputs: Sequence[str | Path]) -> PixelSize | None:
    """The pixel size of the field called `name` among the `inputs` (files or folders).

    The input whose `field_stem` is `name` decides; a field made of several files (one per
    channel) takes the size they all agree on.
    """
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir() and item.suffix.lower() != ".zarr":
            paths += sorted(p for p in item.iterdir() if p.is_file())
        else:
            paths.append(item)
    sizes: dict[str, PixelSize | None] = {}
    for p in paths:
        try:
            sizes[field_stem(p)] = pixel_size(p)
        except (DataFileError, InputError, OSError):
            sizes[field_stem(p)] = None
    name = field_stem(name)
    if name in sizes:
        return sizes[name]
    found = set(sizes.values())
    return found.pop() if len(found) == 1 else None
