"""Writing stains: one TIFF per channel, or an OME-Zarr field with channel names; atomically.

Channel names follow VisCy: `<target>_prediction` for the mean stain and `<target>_std`
for its per-pixel standard deviation over Monte-Carlo samples.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vsgan.errors import InputError
from vsgan.io.files import atomic_path


def _channels(mean: np.ndarray, std: np.ndarray | None, targets: list[str]):
    out = [(f"{t}_prediction", mean[..., i]) for i, t in enumerate(targets)]
    if std is not None:
        out += [(f"{t}_std", std[..., i]) for i, t in enumerate(targets)]
    return out


def _safe_name(name: str) -> str:
    """A channel name as a file-name part: path separators and control characters become _."""
    import re

    return re.sub(r"[\\/\x00-\x1f:*?\"<>|]", "_", str(name)).strip(". ") or "channel"


def write_tiff(path: str | os.PathLike, image: np.ndarray, overwrite: bool = False) -> Path:
    """Writes a 2-D float32 image as TIFF, atomically."""
    import tifffile

    with atomic_path(path, overwrite=overwrite) as tmp:
        tifffile.imwrite(tmp, np.asarray(image, np.float32))
    return Path(path)


def write_ome_zarr(
    path: str | os.PathLike, channels: list[tuple[str, np.ndarray]], overwrite: bool = False
) -> Path:
    """Writes an OME-Zarr field (array `0`, TCZYX) with OMERO channel labels, atomically."""
    import zarr

    with atomic_path(path, overwrite=overwrite, folder=True) as tmp:
        data = np.stack([c for _, c in channels])[None, :, None].astype(np.float32)
        root = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        root.create_array("0", data=data, chunks=(1, 1, 1, *data.shape[-2:]))
        root.attrs["multiscales"] = [
            {
                "version": "0.4",
                "axes": [
                    {"name": "t", "type": "time"},
                    {"name": "c", "type": "channel"},
                    {"name": "z", "type": "space"},
                    {"name": "y", "type": "space"},
                    {"name": "x", "type": "space"},
                ],
                "datasets": [{"path": "0"}],
            }
        ]
        root.attrs["omero"] = {
            "channels": [
                {"label": name, "window": {"start": float(c.min()), "end": float(c.max())}}
                for name, c in channels
            ]
        }
    return Path(path)


def write_stain(
    stem: str | os.PathLike,
    result,
    targets: list[str],
    fmt: str = "tiff",
    overwrite: bool = False,
) -> list[Path]:
    """Writes a `StainResult` as `<stem>_<channel>.tif` files or one `<stem>.zarr` field.

    Args:
        stem: output path without suffix.
        result: a `vsgan.inference.StainResult`.
        targets: the model's output channel names.
        fmt: "tiff" or "zarr".
        overwrite: replace existing files.

    Returns:
        The paths written.
    """
    if len(targets) != result.mean.shape[-1]:
        raise InputError(f"{len(targets)} names for {result.mean.shape[-1]} stain channels.")
    channels = _channels(result.mean, result.std, list(targets))
    names = [_safe_name(name) for name, _ in channels]
    if len(set(names)) != len(names):
        raise InputError(
            f"output channel names {list(targets)} repeat (after making them file names): "
            "their files would overwrite each other. Fix: give every output channel its own "
            "name (output_channels=[...])."
        )
    stem = Path(stem)
    if fmt == "zarr":
        return [write_ome_zarr(stem.with_name(stem.name + ".zarr"), channels, overwrite)]
    if fmt != "tiff":
        raise InputError(f"format {fmt!r} is not supported: use 'tiff' or 'zarr'.")
    return [
        write_tiff(stem.with_name(f"{stem.name}_{name}.tif"), image, overwrite)
        for name, (_, image) in zip(names, channels)
    ]
