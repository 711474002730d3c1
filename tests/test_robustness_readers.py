"""Readers say the truth (issue 14, class 4): full bit depth, compressed TIFFs, no guessed
series, no data from outside an HDF5 file, no silent overflow to float32. Each file is read
in a child process under a memory limit and a timeout."""

import os

import h5py
import imagecodecs
import numpy as np
import pytest
import tifffile
from hostile import run_limited

RNG = np.random.default_rng(0)
U16 = {3: RNG.integers(0, 65535, (5, 7, 3), dtype=np.uint16)}
U16[4] = RNG.integers(0, 65535, (5, 7, 4), dtype=np.uint16)
U16[2] = RNG.integers(256, 65535, (5, 7, 2), dtype=np.uint16)


def _png(tmp, channels):
    path = tmp / f"c{channels}.png"
    path.write_bytes(imagecodecs.png_encode(U16[channels]))
    return path, {}


def _tiff(tmp, compression):
    path = tmp / f"{compression}.tif"
    data = RNG.integers(0, 255, (64, 64), dtype=np.uint8)
    tifffile.imwrite(path, data, compression=compression)
    return path, {}


def _two_series(tmp, pick=None):
    path = tmp / "two.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(np.full((8, 8), 1, np.uint16))
        tif.write(np.full((16, 16), 2, np.uint16))
    return (f"{path}::{pick}" if pick is not None else path), {}


def _external(tmp, where):
    inside = tmp / "raw.bin"
    outside_dir = tmp / "elsewhere"
    outside_dir.mkdir()
    target = inside if where == "inside" else outside_dir / "secret.bin"
    np.full((4, 4), 7, np.uint16).tofile(target)
    folder = tmp / "data"
    folder.mkdir()
    name = {"inside": "../raw.bin", "outside": str(target), "dotdot": "../elsewhere/secret.bin"}
    if where == "inside":  # beside the file, under a relative name
        os.replace(inside, folder / "raw.bin")
        ref = "raw.bin"
    else:
        ref = name[where]
    path = folder / "ext.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("img", (4, 4), "uint16", external=[(ref, 0, 32)])
    return f"{path}::img", {}


def _virtual(tmp):
    other = tmp / "other.h5"
    with h5py.File(other, "w") as f:
        f["src"] = np.full((4, 4), 9, np.uint16)
    folder = tmp / "data"
    folder.mkdir()
    path = folder / "virt.h5"
    layout = h5py.VirtualLayout((4, 4), "uint16")
    layout[:] = h5py.VirtualSource(str(other), "src", (4, 4))
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset("img", layout)
    return f"{path}::img", {}


def _external_link(tmp):
    other = tmp / "other.h5"
    with h5py.File(other, "w") as f:
        f["src"] = np.full((4, 4), 9, np.uint16)
    folder = tmp / "data"
    folder.mkdir()
    path = folder / "link.h5"
    with h5py.File(path, "w") as f:
        f["img"] = h5py.ExternalLink(str(other), "src")
    return f"{path}::img", {}


def _float64(tmp, value):
    path = tmp / "big.npy"
    np.save(path, np.full((4, 4), value, np.float64))
    return path, {}


# (id, builder, expected: ("ok", shape, dtype, max) or ("error", class, words))
CASES = [
    ("png-16bit-rgb", lambda t: _png(t, 3), ("ok", [5, 7, 3], "uint16", float(U16[3].max()))),
    ("png-16bit-rgba", lambda t: _png(t, 4), ("ok", [5, 7, 4], "uint16", float(U16[4].max()))),
    (
        "png-16bit-gray-alpha",
        lambda t: _png(t, 2),
        ("ok", [5, 7, 2], "uint16", float(U16[2].max())),
    ),
    ("tiff-lzw", lambda t: _tiff(t, "lzw"), ("ok", [64, 64, 1], "uint8", None)),
    ("tiff-jpeg", lambda t: _tiff(t, "jpeg"), ("ok", [64, 64, 1], "uint8", None)),
    ("tiff-zstd", lambda t: _tiff(t, "zstd"), ("ok", [64, 64, 1], "uint8", None)),
    ("ome-tiff-two-series", _two_series, ("error", "InputError", "2 image series")),
    ("ome-tiff-series-1-chosen", lambda t: _two_series(t, 1), ("ok", [16, 16, 1], "uint16", 2.0)),
    (
        "ome-tiff-series-5-chosen",
        lambda t: _two_series(t, 5),
        ("error", "InputError", "no such series"),
    ),
    (
        "hdf5-external-beside-the-file",
        lambda t: _external(t, "inside"),
        ("ok", [4, 4, 1], "uint16", 7.0),
    ),
    (
        "hdf5-external-absolute-path",
        lambda t: _external(t, "outside"),
        ("error", "DataFileError", "outside the folder"),
    ),
    (
        "hdf5-external-dotdot",
        lambda t: _external(t, "dotdot"),
        ("error", "DataFileError", "outside the folder"),
    ),
    ("hdf5-virtual-source-elsewhere", _virtual, ("error", "DataFileError", "virtual source")),
    ("hdf5-external-link-elsewhere", _external_link, ("error", "DataFileError", "external link")),
    ("float64-1e300", lambda t: _float64(t, 1e300), ("error", "InputError", "float32")),
    ("float64-minus-1e39", lambda t: _float64(t, -1e39), ("error", "InputError", "float32")),
    ("float64-1e30-fits", lambda t: _float64(t, 1e30), ("ok", [4, 4, 1], "float64", 1e30)),
]


@pytest.mark.parametrize("build,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_reader_tells_the_truth(tmp_path, build, expected):
    path, kwargs = build(tmp_path)
    result = run_limited(path, "read_image", **kwargs)
    if expected[0] == "ok":
        assert "ok" in result, result
        shape, dtype, top = result["ok"]
        assert (shape, dtype) == (expected[1], expected[2])
        if expected[3] is not None:
            assert top == expected[3]
    else:
        assert result.get("error") == expected[1], result
        assert expected[2] in result["message"] and "Fix:" in result["message"]


def test_png_16bit_values_survive_exactly(tmp_path):
    from vsgan.io.readers import read_image

    for channels in (2, 3, 4):
        path, _ = _png(tmp_path, channels)
        np.testing.assert_array_equal(read_image(path), U16[channels])


def test_float64_array_beyond_float32_is_refused_by_stain():
    from conftest import TINY
    from vsgan import Pix2PixHD
    from vsgan.errors import InputError
    from vsgan.inference.stain import stain

    model = Pix2PixHD(1, 1, **TINY)
    with pytest.raises(InputError, match="float32"):
        stain(model, np.full((16, 16), 1e300))
