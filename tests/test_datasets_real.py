"""Datasets: synthetic cells, finding / checking the real data, TFDS builders, A549 layout."""

from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from conftest import shared_data_dir
from vsgan.datasets import (
    ISL_TEST_REGION,
    a549_vscyto2d,
    find_data,
    isl_condition_b,
    mlcp_jurkat,
    sources,
    synthetic_cells,
)
from vsgan.errors import DataFileError
from vsgan.io import ome_zarr

DATA = shared_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="real data (../shared/data) not present")


@pytest.fixture
def no_default_dirs(monkeypatch, tmp_path):
    monkeypatch.delenv("VSGAN_DATA", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))


def test_synthetic_cells_are_seeded_and_physically_linked():
    x, y = synthetic_cells(3, size=96, seed=5, as_arrays=True)
    x2, y2 = synthetic_cells(3, size=96, seed=5, as_arrays=True)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert x.dtype == np.float32 and y.dtype == np.uint16 and y.shape == (3, 96, 96, 2)
    phase, nuclei, membrane = x[..., 0].ravel(), y[..., 0].ravel(), y[..., 1].ravel()
    # Nuclei are the densest, thickest part of a cell: they sit where the phase delay is high.
    assert np.corrcoef(phase, nuclei)[0, 1] > 0.5
    # Nuclear and membrane stains share the geometry but are different images.
    assert 0.0 < np.corrcoef(nuclei, membrane)[0, 1] < 0.9
    hi = nuclei > np.percentile(nuclei, 95)
    assert phase[hi].mean() > phase.mean() + 1.0  # radians: nuclei add ~1 rad or more
    spec = synthetic_cells(4, size=64, targets=["membrane"])
    assert spec.target_names == ["membrane"] and spec.num_fields("val") == 1


def test_find_data_looks_in_arg_then_env(tmp_path, monkeypatch, no_default_dirs):
    folder = tmp_path / "somewhere" / "mlcp-jurkat"
    folder.mkdir(parents=True)
    (folder / "jurkat_ifc.h5").write_bytes(b"x")
    assert find_data("mlcp-jurkat", tmp_path / "somewhere") == folder
    assert find_data("mlcp_jurkat", folder) == folder
    monkeypatch.setenv("VSGAN_DATA", str(tmp_path / "somewhere"))
    assert find_data("mlcp-jurkat") == folder


def test_missing_data_error_says_what_to_download_and_where(tmp_path, no_default_dirs):
    with pytest.raises(DataFileError) as e:
        find_data("isl-condition-b", tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "isl-condition-b" / "phase_contrast_z07.png") in msg
    assert "raw.githubusercontent.com/google/in-silico-labeling" in msg
    assert "z_depth-7,channel-PHASE_CONTRAST" in msg and "channel-DAPI_CONFOCAL" in msg
    assert sources.DATASETS["isl-condition-b"].files[0].sha256 in msg
    with pytest.raises(DataFileError, match=r"(?s)jurkat_ifc.h5.*minh-doan/MLCP"):
        find_data("mlcp-jurkat", tmp_path)


def test_offline_download_fails_with_instructions(tmp_path, monkeypatch):
    import keras

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(DataFileError, match=r"(?s)could not download https://.*DAPI.*sha256"):
        sources.fetch("isl-condition-b", tmp_path)
    with pytest.raises(DataFileError, match="no direct download URL"):
        sources.fetch("mlcp-jurkat", tmp_path)


def test_checksum_mismatch_is_reported(tmp_path):
    (tmp_path / "jurkat_ifc.h5").write_bytes(b"not the file")
    with pytest.raises(sources.ChecksumError, match="jurkat_ifc.h5: sha256"):
        sources.verify("mlcp-jurkat", tmp_path)


@needs_data
def test_recorded_sha256_match_the_shared_files():
    sources.verify("isl-condition-b", DATA / "isl-condition-b")
    sources.verify("mlcp-jurkat", DATA / "mlcp-jurkat")


@needs_data
def test_isl_spec_holds_out_the_bottom_right_quadrant():
    spec = isl_condition_b(DATA)
    regions = spec.fields[0].regions
    assert regions["test"] == [ISL_TEST_REGION] == [(512, 1024, 512, 1024)]
    for rect in regions["train"] + regions["val"]:
        y0, y1, x0, x1 = rect
        assert y1 <= 512 or x1 <= 512  # nothing of train / val inside the test quadrant
    assert spec.in_channels == 13 and spec.target_names == [
        "dapi_confocal_maxproj",
        "map2_confocal_maxproj",
        "nfh_confocal_maxproj",
    ]


@needs_data
def test_mlcp_spec_tests_every_tenth_cell():
    spec = mlcp_jurkat(DATA)
    test = spec.fields_in("test")
    assert len(test) == 792 and all(int(f.name) % 10 == 0 for f in test)
    x, y = spec.fields[1].read()
    assert x.shape == (40, 40, 2) and y.shape == (40, 40, 1) and x.dtype == np.uint16


def _fake_isl(folder: Path, size=32):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for z in range(13):
        Image.fromarray(rng.integers(0, 60000, (size, size), dtype=np.uint16)).save(
            folder / f"phase_contrast_z{z:02d}.png"
        )
    for t in ("dapi", "map2", "nfh"):
        Image.fromarray(rng.integers(0, 60000, (size, size), dtype=np.uint16)).save(
            folder / f"{t}_confocal_maxproj.png"
        )


def test_tfds_builders_on_tiny_local_folders(tmp_path, no_default_dirs):
    import tensorflow_datasets as tfds

    from vsgan.datasets.tfds_builders import IslConditionB, MlcpJurkat

    manual = tmp_path / "manual"
    _fake_isl(manual / "isl-condition-b")
    with h5py.File(
        (manual / "mlcp-jurkat").mkdir(parents=True) or manual / "mlcp-jurkat" / "jurkat_ifc.h5",
        "w",
    ) as f:
        for k in ("brightfield", "darkfield", "dna"):
            f[k] = np.arange(20 * 1600, dtype=np.uint16).reshape(20, 40, 40)
        f["cell_cycle_phase"] = np.array([b"G1"] * 20)
    config = tfds.download.DownloadConfig(manual_dir=str(manual))

    isl = IslConditionB(data_dir=str(tmp_path / "tfds"))
    isl.download_and_prepare(download_config=config)
    train = list(isl.as_dataset(split="train").as_numpy_iterator())
    test = list(isl.as_dataset(split="test").as_numpy_iterator())
    assert len(train) == 3 and len(test) == 1 and test[0]["region"] == b"bottom_right"
    dapi = np.array(Image.open(manual / "isl-condition-b" / "dapi_confocal_maxproj.png"))
    np.testing.assert_array_equal(test[0]["target"][..., 0], dapi[16:, 16:])

    jurkat = MlcpJurkat(data_dir=str(tmp_path / "tfds"))
    jurkat.download_and_prepare(download_config=config)
    test = list(jurkat.as_dataset(split="test").as_numpy_iterator())
    assert sorted(int(e["index"]) for e in test) == [0, 10]
    assert jurkat.info.splits["train"].num_examples == 18


def test_a549_layout_spec_and_builder(tmp_path):
    """A tiny store in the documented VSCyto2D layout (REFERENCE.md section 5)."""
    import tensorflow_datasets as tfds

    from vsgan.datasets.tfds_builders import A549Vscyto2d

    rng = np.random.default_rng(0)
    train = {f"0/0/{k}": rng.random((1, 3, 1, 16, 16)).astype(np.float32) for k in range(4)}
    ome_zarr.write_plate(
        tmp_path / "a549_hoechst_cellmask_train_val.zarr", train, ["Phase3D", "Nuclei", "Membrane"]
    )
    test = {"0/0/0": rng.random((1, 4, 1, 16, 16)).astype(np.float32)}
    ome_zarr.write_plate(
        tmp_path / "a549_hoechst_cellmask_test.zarr",
        test,
        ["Phase3D", "Nucl", "Mem", "Nuclei_mask"],
    )
    spec = a549_vscyto2d(tmp_path / "a549_hoechst_cellmask_train_val.zarr", seed_split=True)
    assert [f.name for f in spec.fields_in("train")] == ["0/0/1", "0/0/2", "0/0/3"]
    tspec = a549_vscyto2d(tmp_path / "a549_hoechst_cellmask_test.zarr", test=True)
    assert tspec.target_names == ["Nucl", "Mem"]  # the label mask is not taken for "Nuclei"

    builder = A549Vscyto2d(data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path))
    )
    assert builder.info.splits["train"].num_examples == 3
    ex = next(builder.as_dataset(split="test").as_numpy_iterator())
    np.testing.assert_array_equal(ex["target"], np.moveaxis(test["0/0/0"][0, 1:3, 0], 0, -1))
