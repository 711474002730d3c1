"""Readers: every format comes back as (H, W, C) in its stored dtype, channels by name or index."""

import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image

from vsgan.errors import DataFileError, InputError
from vsgan.io import ome_zarr
from vsgan.io.readers import channel_names, read_image, resolve_channels

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_tiff_dtypes_roundtrip(tmp_path, dtype):
    a = (RNG.random((12, 10)) * 200).astype(dtype)
    tifffile.imwrite(tmp_path / "a.tif", a)
    out = read_image(tmp_path / "a.tif")
    assert out.shape == (12, 10, 1) and out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out[..., 0], a)


def test_tiff_multipage_and_imagej_hyperstack(tmp_path):
    pages = RNG.integers(0, 4000, (3, 8, 9), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "pages.tif", pages)
    out = read_image(tmp_path / "pages.tif")
    assert out.shape == (8, 9, 3)
    np.testing.assert_array_equal(out[..., 2], pages[2])
    # ImageJ hyperstack T=1, Z=2, C=3: every (z, c) plane becomes a channel, z-major.
    stack = RNG.integers(0, 4000, (1, 2, 3, 8, 9), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "ij.tif", stack, imagej=True, metadata={"axes": "TZCYX"})
    out = read_image(tmp_path / "ij.tif")
    assert out.shape == (8, 9, 6)
    np.testing.assert_array_equal(out[..., 4], stack[0, 1, 1])
    np.testing.assert_array_equal(read_image(tmp_path / "ij.tif", [5])[..., 0], stack[0, 1, 2])


def test_png_keeps_16_bit_and_8_bit(tmp_path):
    a16 = RNG.integers(0, 65535, (7, 5), dtype=np.uint16)
    Image.fromarray(a16).save(tmp_path / "a16.png")
    out = read_image(tmp_path / "a16.png")
    assert out.dtype == np.uint16 and out.max() > 255
    np.testing.assert_array_equal(out[..., 0], a16)
    rgb = RNG.integers(0, 255, (7, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png", [2])[..., 0], rgb[..., 2])


def test_hdf5_path_suffix_dataset_arg_and_index(tmp_path):
    stack = RNG.integers(0, 999, (4, 6, 6), dtype=np.uint16)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["bf"] = stack
        f["grp/img"] = stack[0]
    np.testing.assert_array_equal(read_image(f"{tmp_path}/d.h5::grp/img")[..., 0], stack[0])
    np.testing.assert_array_equal(
        read_image(tmp_path / "d.h5", dataset="bf", index=2)[..., 0], stack[2]
    )
    with pytest.raises(InputError, match="grp/img"):  # several datasets: say which exist
        read_image(tmp_path / "d.h5")
    with pytest.raises(InputError, match="Known datasets"):
        read_image(tmp_path / "d.h5", dataset="nope")


def test_npy_and_arrays(tmp_path):
    a = RNG.random((5, 6, 2)).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    np.testing.assert_array_equal(read_image(tmp_path / "a.npy"), a)
    assert read_image(a[..., 0]).shape == (5, 6, 1)
    with pytest.raises(InputError, match="shape"):
        read_image(np.zeros((2, 3, 4, 5)))


def test_ome_zarr_plate_channel_names_loose_and_z_planes(tmp_path):
    data = RNG.random((1, 3, 2, 8, 8)).astype(np.float32)
    ome_zarr.write_plate(
        tmp_path / "p.zarr", {"0/0/0": data, "0/0/1": data * 2}, ["Phase3D", "Nucl", "Mem"]
    )
    assert ome_zarr.plate_positions(tmp_path / "p.zarr") == ["0/0/0", "0/0/1"]
    assert channel_names(f"{tmp_path}/p.zarr::0/0/1") == ["Phase3D", "Nucl", "Mem"]
    # "Nuclei" finds "Nucl", "membrane" finds "Mem"; z=1 picks one plane.
    out = read_image(f"{tmp_path}/p.zarr::0/0/1", ["Nuclei", "membrane"], z=1)
    np.testing.assert_allclose(out[..., 0], 2 * data[0, 1, 1])
    np.testing.assert_allclose(out[..., 1], 2 * data[0, 2, 1])
    # All planes of a channel: "Phase3D" -> 2 channels (focal planes as inputs).
    assert read_image(f"{tmp_path}/p.zarr::0/0/0", "Phase3D").shape == (8, 8, 2)
    with pytest.raises(InputError, match="position"):
        read_image(tmp_path / "p.zarr")


def test_unknown_and_ambiguous_channel_names_list_the_known_ones():
    names = ["Phase3D", "Nuclei", "Membrane"]
    assert resolve_channels(names, ["nucl", 0], 3, "x") == [1, 0]
    with pytest.raises(InputError, match=r"Known channels: \['Phase3D', 'Nuclei', 'Membrane'\]"):
        resolve_channels(names, "DAPI", 3, "x")
    with pytest.raises(InputError, match="ambiguous"):
        resolve_channels(["GFP1", "GFP2"], "GFP", 2, "x")
    with pytest.raises(InputError, match="out of range"):
        resolve_channels(names, 3, 3, "x")
    with pytest.raises(InputError, match="no channel names"):
        resolve_channels(None, "Nuclei", 3, "x")


def test_bad_files_name_the_file(tmp_path):
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(DataFileError, match="empty.tif.*empty"):
        read_image(tmp_path / "empty.tif")
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(DataFileError, match="bad.png"):
        read_image(tmp_path / "bad.png")
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(DataFileError, match="bad.tif"):
        read_image(tmp_path / "bad.tif")
    with pytest.raises(DataFileError, match="no such file"):
        read_image(tmp_path / "missing.tif")
    with pytest.raises(DataFileError, match="unsupported"):
        (tmp_path / "a.xyz").write_text("x")
        read_image(tmp_path / "a.xyz")


def test_nan_is_refused_unless_allowed(tmp_path):
    a = np.ones((4, 4), np.float32)
    a[1, 2] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", a)
    with pytest.raises(InputError, match="nan.tif.*1 NaN"):
        read_image(tmp_path / "nan.tif")
    assert np.isnan(read_image(tmp_path / "nan.tif", allow_nan=True)).sum() == 1
