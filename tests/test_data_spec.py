"""PairedDataset specs: folder / HDF5 / zarr-plate constructors, splits, JSON, bad pairs."""

import h5py
import numpy as np
import pytest
import tifffile

from vsgan.data.normalize import Normalization
from vsgan.data.spec import PairedDataset
from vsgan.data.splits import check_disjoint, split_fields, split_regions
from vsgan.errors import DataFileError, InputError
from vsgan.io import ome_zarr

RNG = np.random.default_rng(0)


def _img(h=16, w=16):
    return RNG.integers(0, 4000, (h, w), dtype=np.uint16)


def test_from_folder_subfolders_with_focal_planes(tmp_path):
    for name in ["f1", "f2", "f3"]:
        d = tmp_path / name
        d.mkdir()
        for z in range(3):
            tifffile.imwrite(d / f"phase_z{z}.tif", _img())
        tifffile.imwrite(d / "dapi.tif", _img())
        tifffile.imwrite(d / "membrane.tif", _img())
    spec = PairedDataset.from_folder(
        tmp_path,
        ["phase_z*.tif"],
        ["dapi.tif", "membrane.tif"],
        val_fraction=0.34,
        test_fields=["f3"],
    )
    assert spec.input_names == ["phase_z0", "phase_z1", "phase_z2"]
    assert spec.target_names == ["dapi", "membrane"]
    assert {f.name: f.split for f in spec.fields}["f3"] == "test"
    assert spec.num_fields("train") == 1 and spec.num_fields("val") == 1
    x, y = spec.fields[0].read()
    assert x.shape == (16, 16, 3) and y.shape == (16, 16, 2)


def test_from_folder_flat_layout_with_field_placeholder(tmp_path):
    for name in ["a01", "a02"]:
        tifffile.imwrite(tmp_path / f"{name}_phase.tif", _img())
        tifffile.imwrite(tmp_path / f"{name}_dapi.tif", _img())
    tifffile.imwrite(tmp_path / "a03_phase.tif", _img())  # no target: not a field
    spec = PairedDataset.from_folder(
        tmp_path, ["{field}_phase.tif"], ["{field}_dapi.tif"], val_fraction=0.5
    )
    assert sorted(f.name for f in spec.fields) == ["a01", "a02"]
    assert spec.input_names == ["phase"] and spec.target_names == ["dapi"]


def test_from_folder_errors(tmp_path):
    with pytest.raises(DataFileError, match="no field holds files"):
        PairedDataset.from_folder(tmp_path, ["*.tif"], ["*.png"])
    tifffile.imwrite(tmp_path / "phase.tif", _img(16, 16))
    tifffile.imwrite(tmp_path / "dapi.tif", _img(16, 12))
    with pytest.raises(InputError, match="too few fields"):
        PairedDataset.from_folder(tmp_path, ["phase.tif"], ["dapi.tif"], val_fraction=0.2)
    with pytest.raises(InputError, match=r"phase.tif.*dapi.tif.*differ in size.*Fix"):
        PairedDataset.from_folder(tmp_path, ["phase.tif"], ["dapi.tif"], val_fraction=0)


def test_from_hdf5_stacks_with_modulo_test_split(tmp_path):
    with h5py.File(tmp_path / "cells.h5", "w") as f:
        f["brightfield"] = RNG.integers(0, 999, (30, 8, 8), dtype=np.uint16)
        f["darkfield"] = RNG.integers(0, 999, (30, 8, 8), dtype=np.uint16)
        f["dna"] = RNG.integers(0, 999, (30, 8, 8), dtype=np.uint16)
        f["short"] = np.zeros((29, 8, 8))
    spec = PairedDataset.from_hdf5(
        tmp_path / "cells.h5",
        ["brightfield", "darkfield"],
        ["dna"],
        test_every=10,
        val_fraction=0.1,
    )
    assert [int(f.name) for f in spec.fields_in("test")] == [0, 10, 20]
    assert spec.num_fields("val") == 3 and spec.num_fields("train") == 24
    x, y = spec.fields[7].read()
    assert x.shape == (8, 8, 2) and y.shape == (8, 8, 1)
    with h5py.File(tmp_path / "cells.h5") as f:
        np.testing.assert_array_equal(x[..., 1], f["darkfield"][7])
    with pytest.raises(InputError, match="different numbers of items"):
        PairedDataset.from_hdf5(tmp_path / "cells.h5", ["brightfield"], ["short"])
    with pytest.raises(InputError, match="Known datasets"):
        PairedDataset.from_hdf5(tmp_path / "cells.h5", ["phase"], ["dna"])


def test_from_zarr_plate_vscyto2d_layout(tmp_path):
    """The A549 layout: positions 0/0/<fov>, arrays (1, C, 1, Y, X), names Phase3D/Nucl/Mem."""
    fields = {f"0/0/{k}": RNG.random((1, 3, 1, 16, 16)).astype(np.float32) for k in range(5)}
    ome_zarr.write_plate(tmp_path / "a549.zarr", fields, ["Phase3D", "Nucl", "Mem"])
    spec = PairedDataset.from_zarr_plate(
        tmp_path / "a549.zarr", ["Phase3D"], ["Nuclei", "Membrane"], test_positions=["0/0/4"]
    )
    assert spec.target_names == ["Nucl", "Mem"]
    assert spec.num_fields("test") == 1 and spec.num_fields("val") == 1
    x, y = spec.fields[2].read()
    np.testing.assert_array_equal(x[..., 0], fields["0/0/2"][0, 0, 0])
    np.testing.assert_array_equal(y[..., 1], fields["0/0/2"][0, 2, 0])
    with pytest.raises(InputError, match="Known channels"):
        PairedDataset.from_zarr_plate(tmp_path / "a549.zarr", ["Phase3D"], ["GFP"])


def test_json_round_trip_with_fitted_normalization(tmp_path):
    for z in range(2):
        tifffile.imwrite(tmp_path / f"phase_z{z}.tif", _img(32, 32))
    tifffile.imwrite(tmp_path / "dapi.tif", _img(32, 32))
    spec = PairedDataset.from_folder(
        tmp_path,
        ["phase_z*.tif"],
        ["dapi.tif"],
        val_fraction=0,
        target_norm=Normalization("percentile"),
    )
    spec.fields[0].split = None
    spec.fields[0].regions = split_regions(32, 32, val_fraction=0.25)
    spec.fit_normalization()
    spec.save(tmp_path / "dataset.json")
    again = PairedDataset.load(tmp_path / "dataset.json")
    assert again.get_config() == spec.get_config()
    assert again.target_norm == spec.target_norm and again.target_norm.is_fitted
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataFileError, match="bad.json"):
        PairedDataset.load(tmp_path / "bad.json")
    with pytest.raises(InputError, match="in-memory"):
        PairedDataset.from_arrays([np.zeros((4, 4))] * 2, [np.zeros((4, 4))] * 2).get_config()


def test_split_fields_is_seeded_and_needs_enough_fields():
    names = [f"f{i}" for i in range(10)]
    a = split_fields(names, val_fraction=0.3, test=["f0"], seed=1)
    assert a == split_fields(names, val_fraction=0.3, test=["f0"], seed=1)
    assert sorted(a.values()).count("val") == 3 and a["f0"] == "test"
    with pytest.raises(InputError, match="too few fields.*split_regions"):
        split_fields(["only"], val_fraction=0.2)


def test_split_regions_isl_keeps_the_test_quadrant_apart():
    r = split_regions(
        1024, 1024, test_region=(512, 1024, 512, 1024), val_fraction=0.25, min_size=256
    )
    assert r["test"] == [(512, 1024, 512, 1024)]
    covered = np.zeros((1024, 1024), int)
    for rects in r.values():
        for y0, y1, x0, x1 in rects:
            covered[y0:y1, x0:x1] += 1
    assert (covered == 1).all()  # a partition: disjoint and complete
    val_area = sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in r["val"])
    assert val_area == pytest.approx(0.25 * 3 * 512 * 512, rel=0.01)
    with pytest.raises(InputError, match="overlap"):
        check_disjoint({"train": [(0, 10, 0, 10)], "val": [(5, 15, 5, 15)]})
