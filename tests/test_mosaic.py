"""Mosaics stream from disk to disk and equal the in-memory `stain` of the same field."""

import numpy as np
import pytest
import tifffile
import zarr

import vsgan
from conftest import TINY
from vsgan.data import Normalization, normalize
from vsgan.inference import mosaic
from vsgan.inference.stain import stain
from vsgan.io import ome_zarr
from vsgan.io.metadata import PixelSize


@pytest.fixture(scope="module")
def model():
    return vsgan.Pix2PixHD(
        1,
        2,
        output_channels=["nuclei", "membrane"],
        input_channels=["Phase3D"],
        normalization={
            "input": Normalization("percentile", per_field=True).get_config(),
            "target": Normalization.fixed([4400.0, 18372.0]).get_config(),
        },
        **TINY,
    )


@pytest.fixture(scope="module")
def field():
    rng = np.random.default_rng(3)
    return rng.integers(0, 4000, (150, 230, 2), dtype=np.uint16)  # Phase3D, Nuclei


def _read(path):
    group = zarr.open_group(str(path), mode="r")
    labels = [c["label"] for c in group.attrs["omero"]["channels"]]
    return np.asarray(group["0"])[0, :, 0], labels


@pytest.mark.parametrize("source", ["zarr", "tiled-tiff"])
def test_streamed_mosaic_equals_in_memory_stain(model, field, source, tmp_path, monkeypatch):
    monkeypatch.setattr(mosaic, "BLOCK", 37)  # many blocks, uneven against the tiles
    # Quantiles from every 34th pixel of the field, gathered block by block as `fit` strides.
    monkeypatch.setattr(normalize, "_MAX_SAMPLES_PER_FIELD", 997)
    if source == "zarr":
        path = tmp_path / "field.zarr"
        data = np.moveaxis(field, -1, 0)
        ome_zarr.write_image(path, data, ["Phase3D", "Nuclei"], pixel_size=PixelSize(0.2, 0.2))
    else:
        path = tmp_path / "field.tif"
        tifffile.imwrite(
            path,
            field[..., 0],
            tile=(32, 32),
            imagej=True,
            resolution=(5, 5),
            metadata={"unit": "um"},
        )
    expected = stain(model, field[..., :1], tile_size=64, overlap=20, tta=True)
    out = mosaic.stain_mosaic(
        model, path, tmp_path / "out.zarr", tile_size=64, overlap=20, tta=True
    )
    data, labels = _read(out)
    assert labels == ["nuclei_prediction", "membrane_prediction", "nuclei_std", "membrane_std"]
    assert expected.tiles > 4
    np.testing.assert_array_equal(data[:2], np.moveaxis(expected.mean, -1, 0))
    np.testing.assert_array_equal(data[2:], np.moveaxis(expected.std, -1, 0))
    assert ome_zarr.field_pixel_size(out).x == 0.2
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_field_smaller_than_a_tile_is_mirrored_like_stain(model, field, tmp_path):
    path = tmp_path / "small.tif"
    tifffile.imwrite(path, field[:37, :51, 0])
    expected = stain(model, field[:37, :51, :1], tile_size=64)
    data, _ = _read(mosaic.stain_mosaic(model, path, tmp_path / "o.zarr", tile_size=64))
    np.testing.assert_array_equal(data, np.moveaxis(expected.mean, -1, 0))


def test_predict_mosaic_streams_each_input(model, field, tmp_path):
    from vsgan import cli

    saved = tmp_path / "m.keras"
    model.save(saved)
    path = tmp_path / "big.ome.tif"
    tifffile.imwrite(path, field[..., 0], tile=(64, 64))
    args = ["predict", str(saved), str(path), "-o", str(tmp_path / "out"), "--mosaic"]
    assert cli.main([*args, "--tile-size", "64", "--quiet"]) == 0
    data, _ = _read(tmp_path / "out" / "big.zarr")
    expected = stain(model, field[..., :1], tile_size=64)
    np.testing.assert_array_equal(data, np.moveaxis(expected.mean, -1, 0))
