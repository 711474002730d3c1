"""Fuzzing (issue 7 item 6): random bytes and random arrays into every reader and into
`vsgan.stain`; the only exception allowed is a `vsgan.errors.VsganError`."""

import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import zarr
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import vsgan
from conftest import TINY
from vsgan.errors import VsganError
from vsgan.inference.stain import stain
from vsgan.io.readers import read_image

SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

# Real magic numbers, so random tails reach the parsers rather than the format sniffing.
MAGIC = {
    ".tif": [b"", b"II*\x00", b"MM\x00*", b"II+\x00\x08\x00\x00\x00"],
    ".png": [b"", b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"],
    ".jpg": [b"", b"\xff\xd8\xff\xe0"],
    ".h5": [b"", b"\x89HDF\r\n\x1a\n"],
    ".npy": [b"", b"\x93NUMPY\x01\x00", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', "],
}
DTYPES = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint64", "float16", "float32"]
DTYPES += ["float64", "complex64"]


def _check(result):
    assert isinstance(result, np.ndarray) and result.ndim == 3 and min(result.shape) >= 1
    assert result.dtype.kind in "biuf"


def _read(path, **kwargs):
    try:
        result = read_image(path, **kwargs)
    except VsganError:
        return
    _check(result)


@settings(max_examples=120, **SETTINGS)
@given(
    suffix=st.sampled_from(sorted(MAGIC)),
    magic=st.integers(0, 2),
    tail=st.binary(max_size=2048),
)
def test_random_bytes_into_every_file_reader(suffix, magic, tail):
    head = MAGIC[suffix][magic % len(MAGIC[suffix])]
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(head + tail)
        _read(path)


@settings(max_examples=40, **SETTINGS)
@given(
    where=st.sampled_from(["zarr.json", "0/zarr.json", "0/c/0/0/0/0/0", ".zattrs"]),
    data=st.binary(max_size=512),
)
def test_random_bytes_into_a_zarr_store(where, data):
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "f.zarr"
        group = zarr.open_group(str(store), mode="w")
        group.create_array("0", data=np.ones((1, 1, 1, 8, 8), "uint16"), chunks=(1, 1, 1, 8, 8))
        target = store / where
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        _read(store)


arrays = st.tuples(
    st.lists(st.integers(0, 9), min_size=0, max_size=4),
    st.sampled_from(DTYPES),
    st.sampled_from([0.0, 1.0, 65535.0, 1e300, np.nan, np.inf, -np.inf]),
)


def _make(shape, dtype, special):
    rng = np.random.default_rng(len(shape))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        array = (rng.random(shape) * 100).astype(dtype)
        if array.size and dtype.startswith(("float", "complex")):
            array.flat[0] = special
    return array


@settings(max_examples=60, **SETTINGS)
@given(spec=arrays, fmt=st.sampled_from([".npy", ".tif", ".h5", ".zarr"]))
def test_random_shapes_and_dtypes_into_every_reader(spec, fmt):
    array = _make(*spec)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"a{fmt}"
        try:
            if fmt == ".npy":
                np.save(path, array)
            elif fmt == ".tif":
                tifffile.imwrite(path, array)
            elif fmt == ".h5":
                with h5py.File(path, "w") as f:
                    f["a"] = array
            else:
                group = zarr.open_group(str(path), mode="w")
                group.create_array("0", data=array)
        except Exception:  # the writer itself refused (e.g. a zero-size TIFF)
            return
        _read(path)


@pytest.fixture(scope="module")
def model():
    return vsgan.Pix2PixHD(1, 1, **{**TINY, "dropout": 0.2})


@settings(max_examples=60, **SETTINGS)
@given(
    spec=st.tuples(
        st.one_of(  # mostly fields the model can take, to reach the staining itself
            st.tuples(st.integers(1, 21), st.integers(1, 21)).map(list),
            st.tuples(st.integers(0, 21), st.integers(0, 21), st.sampled_from([1, 1, 2])).map(list),
            st.lists(st.integers(0, 9), min_size=1, max_size=4),
        ),
        st.sampled_from(DTYPES),
        st.sampled_from([0.0, 1.0, 1e30, 1e300, np.nan, np.inf]),
    ),
    samples=st.integers(1, 2),
    tile=st.sampled_from([None, 8, 16]),
)
def test_random_arrays_into_stain(model, spec, samples, tile):
    image = _make(*spec)
    try:
        result = stain(model, image, samples=samples, tile_size=tile)
    except VsganError:
        event("refused")
        return
    event("stained")
    height, width = image.shape[:2]
    assert result.mean.shape == (height, width, 1)
    assert np.isfinite(result.mean).all()
