"""Bad inputs and safe loading (issue 7 items 4-5).

Every malformed input gives a `vsgan.errors` exception whose message names the file (where
there is one) and the fix; through the CLI: one line on stderr, exit status 2, no
traceback, and nothing written. One row per input, with an id naming it.
"""

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

import vsgan
from conftest import TINY
from vsgan import cli
from vsgan.data.spec import Field, PairedDataset, Source
from vsgan.errors import (
    ChecksumError,
    DataFileError,
    InputError,
    ModelFileError,
    UnknownPresetError,
    VsganError,
)
from vsgan.inference.stain import stain
from vsgan.io.ome_zarr import write_plate
from vsgan.io.readers import read_image
from vsgan.training.callbacks import atomic_save
from vsgan.training.recipes import Recipe
from vsgan.zoo import presets as zoo

GOOD = np.random.default_rng(0).integers(0, 1000, (32, 32), dtype=np.uint16)


# ------------------------------------------------------------------- file makers
def _tif(tmp: Path, data=GOOD, name="img.tif") -> Path:
    tifffile.imwrite(tmp / name, data)
    return tmp / name


def _truncated(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def tiff_truncated(tmp):
    return _truncated(_tif(tmp, np.random.default_rng(1).integers(0, 9, (256, 256), "uint16")))


def tiff_random_bytes(tmp):
    (tmp / "x.tif").write_bytes(np.random.default_rng(2).bytes(600))
    return tmp / "x.tif"


def text_file_named_tif(tmp):
    (tmp / "notes.tif").write_text("these are my notes\n" * 20)
    return tmp / "notes.tif"


def empty_file(tmp):
    (tmp / "empty.tif").write_bytes(b"")
    return tmp / "empty.tif"


def tiff_absurd_size(tmp):
    """A 16 x 16 TIFF whose header claims 1,000,000 x 1,000,000 pixels (2 TB)."""
    path = _tif(tmp, np.zeros((16, 16), np.uint16))
    with tifffile.TiffFile(path) as tif:
        offsets = [tif.pages[0].tags[t].valueoffset for t in ("ImageWidth", "ImageLength")]
    raw = bytearray(path.read_bytes())
    for offset in offsets:
        raw[offset : offset + 4] = struct.pack("<I", 1_000_000)
    path.write_bytes(bytes(raw))
    return path


def tiff_complex_dtype(tmp):
    return _tif(tmp, np.zeros((8, 8), np.complex64))


def tiff_inf_pixels(tmp):
    data = np.ones((8, 8), np.float32)
    data[3, 4] = np.inf
    return _tif(tmp, data)


def tiff_page_out_of_range(tmp):
    return _tif(tmp), {"index": 5}


def png_truncated(tmp):
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (64, 64), np.uint8)).save(
        tmp / "a.png"
    )
    return _truncated(tmp / "a.png")


def png_corrupt_body(tmp):
    (tmp / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(4).bytes(200))
    return tmp / "b.png"


def png_decompression_bomb(tmp):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 16, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    png += chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    (tmp / "bomb.png").write_bytes(png)
    return tmp / "bomb.png"


def jpeg_random_bytes(tmp):
    (tmp / "c.jpg").write_bytes(np.random.default_rng(5).bytes(64))
    return tmp / "c.jpg"


def _h5(tmp, **datasets) -> Path:
    with h5py.File(tmp / "d.h5", "w") as f:
        for k, v in datasets.items():
            f[k] = v
    return tmp / "d.h5"


def hdf5_truncated(tmp):
    return _truncated(_h5(tmp, a=np.zeros((64, 64), np.float32)))


def hdf5_random_bytes(tmp):
    (tmp / "r.h5").write_bytes(np.random.default_rng(6).bytes(4000))
    return tmp / "r.h5"


def hdf5_two_datasets_unnamed(tmp):
    return _h5(tmp, a=GOOD, b=GOOD)


def hdf5_missing_dataset(tmp):
    return f"{_h5(tmp, a=GOOD)}::nuclei"


def hdf5_string_dataset(tmp):
    return _h5(tmp, a=np.array([[b"ab", b"cd"], [b"ef", b"gh"]]))


def hdf5_absurd_shape(tmp):
    with h5py.File(tmp / "big.h5", "w") as f:  # chunked, never written: a tiny file
        f.create_dataset("a", shape=(1_000_000, 1_000_000), dtype="f4", chunks=(64, 64))
    return tmp / "big.h5"


def hdf5_index_out_of_range(tmp):
    return _h5(tmp, a=np.zeros((3, 8, 8), np.uint16)), {"index": 3}


def _npy(tmp, data, name="a.npy") -> Path:
    np.save(tmp / name, data, allow_pickle=True)
    return tmp / name


def npy_random_bytes(tmp):
    (tmp / "r.npy").write_bytes(np.random.default_rng(7).bytes(300))
    return tmp / "r.npy"


def npy_pickled_objects(tmp):
    return _npy(tmp, np.array([{"code": "runs?"}, None], dtype=object))


def npy_truncated(tmp):
    return _truncated(_npy(tmp, np.zeros((64, 64), np.float32)))


def npy_zero_size(tmp):
    return _npy(tmp, np.zeros((0, 16), np.float32))


def npy_1d(tmp):
    return _npy(tmp, np.zeros(16, np.float32))


def npy_5d(tmp):
    return _npy(tmp, np.zeros((2, 2, 4, 4, 1), np.float32))


def npy_nan_pixels(tmp):
    return _npy(tmp, np.full((8, 8), np.nan, np.float32))


def npy_complex_dtype(tmp):
    return _npy(tmp, np.zeros((8, 8), np.complex128))


def zarr_empty_folder(tmp):
    (tmp / "e.zarr").mkdir()
    return tmp / "e.zarr"


def zarr_corrupt_metadata(tmp):
    group = zarr.open_group(str(tmp / "m.zarr"), mode="w")
    group.create_array("0", data=np.zeros((1, 1, 1, 8, 8), np.uint16))
    (tmp / "m.zarr" / "zarr.json").write_text("{not json")
    return tmp / "m.zarr"


def zarr_corrupt_chunk(tmp):
    group = zarr.open_group(str(tmp / "c.zarr"), mode="w")
    group.create_array("0", data=np.ones((1, 1, 1, 8, 8), np.uint16), chunks=(1, 1, 1, 8, 8))
    chunks = [p for p in (tmp / "c.zarr" / "0").rglob("*") if p.is_file() and "json" not in p.name]
    for p in chunks:
        p.write_bytes(b"not a compressed chunk")
    assert chunks
    return tmp / "c.zarr"


def zarr_without_array(tmp):
    zarr.open_group(str(tmp / "g.zarr"), mode="w")
    return tmp / "g.zarr"


def zarr_plate_without_position(tmp):
    write_plate(tmp / "p.zarr", {"0/0/0": np.zeros((1, 1, 1, 8, 8), "uint16")}, ["Phase3D"])
    return tmp / "p.zarr"


def zarr_absurd_shape(tmp):
    group = zarr.open_group(str(tmp / "big.zarr"), mode="w")
    group.create_array(
        "0", shape=(1, 1, 1, 1_000_000, 1_000_000), dtype="uint16", chunks=(1, 1, 1, 64, 64)
    )
    return tmp / "big.zarr"


def missing_path(tmp):
    return tmp / "no_such_image.tif"


def unsupported_suffix(tmp):
    (tmp / "image.xyz").write_bytes(b"data")
    return tmp / "image.xyz"


def unknown_channel_name(tmp):
    write_plate(tmp / "n.zarr", {"0/0/0": np.zeros((1, 1, 1, 8, 8), "uint16")}, ["Phase3D"])
    return f"{tmp / 'n.zarr'}::0/0/0", {"channels": "Nuclei"}


def channel_index_out_of_range(tmp):
    return _tif(tmp), {"channels": 3}


# (maker, expected type, message excerpt)
READER_CASES = {
    "tiff-truncated": (tiff_truncated, DataFileError, "not a readable TIFF"),
    "tiff-random-bytes": (tiff_random_bytes, DataFileError, "not a readable TIFF"),
    "text-file-named-tif": (text_file_named_tif, DataFileError, "not a TIFF file"),
    "empty-file-0-bytes": (empty_file, DataFileError, "empty (0 bytes)"),
    "tiff-header-claims-2TB": (tiff_absurd_size, InputError, "GiB"),
    "tiff-complex-dtype": (tiff_complex_dtype, InputError, "complex64 values"),
    "tiff-inf-pixel": (tiff_inf_pixels, InputError, "NaN/inf pixel"),
    "tiff-page-out-of-range": (tiff_page_out_of_range, InputError, "page 5 out of range"),
    "png-truncated": (png_truncated, DataFileError, "truncated"),
    "png-corrupt-body": (png_corrupt_body, DataFileError, "not a readable image"),
    "png-decompression-bomb": (png_decompression_bomb, InputError, "decompression bomb"),
    "jpeg-random-bytes": (jpeg_random_bytes, DataFileError, "not a readable image"),
    "hdf5-truncated": (hdf5_truncated, DataFileError, "truncated"),
    "hdf5-random-bytes": (hdf5_random_bytes, DataFileError, "cannot open as HDF5"),
    "hdf5-two-datasets-unnamed": (hdf5_two_datasets_unnamed, InputError, "name one as"),
    "hdf5-missing-dataset": (hdf5_missing_dataset, InputError, "no dataset 'nuclei'"),
    "hdf5-string-dataset": (hdf5_string_dataset, InputError, "not real numbers"),
    "hdf5-absurd-shape": (hdf5_absurd_shape, InputError, "GiB"),
    "hdf5-index-out-of-range": (hdf5_index_out_of_range, InputError, "index 3 out of range"),
    "npy-random-bytes": (npy_random_bytes, DataFileError, "numpy.save"),
    "npy-pickled-objects": (npy_pickled_objects, DataFileError, "numeric arrays only"),
    "npy-truncated": (npy_truncated, DataFileError, "not a readable .npy"),
    "npy-zero-size": (npy_zero_size, DataFileError, "image is empty"),
    "npy-1d-array": (npy_1d, InputError, "expected an (H, W)"),
    "npy-5d-array": (npy_5d, InputError, "expected an (H, W)"),
    "npy-nan-pixels": (npy_nan_pixels, InputError, "np.nan_to_num"),
    "npy-complex-dtype": (npy_complex_dtype, InputError, "complex128 values"),
    "zarr-empty-folder": (zarr_empty_folder, DataFileError, "cannot open as a zarr group"),
    "zarr-corrupt-metadata": (zarr_corrupt_metadata, DataFileError, "cannot open"),
    "zarr-corrupt-chunk": (zarr_corrupt_chunk, DataFileError, "damaged or incomplete"),
    "zarr-without-array": (zarr_without_array, DataFileError, "no array '0'"),
    "zarr-plate-without-position": (zarr_plate_without_position, InputError, "name a field"),
    "zarr-absurd-shape": (zarr_absurd_shape, InputError, "GiB"),
    "missing-path": (missing_path, DataFileError, "no such file"),
    "unsupported-suffix": (unsupported_suffix, DataFileError, "unsupported format '.xyz'"),
    "unknown-channel-name": (unknown_channel_name, InputError, "Known channels: ['Phase3D']"),
    "channel-index-out-of-range": (channel_index_out_of_range, InputError, "out of range"),
}


@pytest.mark.parametrize("case", list(READER_CASES), ids=list(READER_CASES))
def test_reader_refuses(tmp_path, case):
    make, error, excerpt = READER_CASES[case]
    made = make(tmp_path)
    source, kwargs = made if isinstance(made, tuple) else (made, {})
    files_before = sorted(tmp_path.rglob("*"))
    with pytest.raises(error) as info:
        read_image(source, **kwargs)
    message = str(info.value)
    assert excerpt in message
    assert str(source).split("::")[0] in message  # names the file
    assert sorted(tmp_path.rglob("*")) == files_before  # reading writes nothing


def test_one_pixel_image_reads_and_stains(tmp_path, model):
    """Not an error: a 1 x 1 field is padded to the network's multiple and cropped back."""
    one = read_image(_tif(tmp_path, np.full((1, 1), 7, np.uint16)))
    assert one.shape == (1, 1, 1)
    assert stain(model, one).mean.shape == (1, 1, 1)


def test_mismatched_pair_shapes(tmp_path):
    x, y = _tif(tmp_path, GOOD, "x.tif"), _tif(tmp_path, GOOD[:16], "y.tif")
    field = Field("f0", [Source(str(x))], [Source(str(y))])
    with pytest.raises(InputError, match=r"differ in size.*Fix") as info:
        field.read()
    assert str(x) in str(info.value) and str(y) in str(info.value)


def test_dataset_spec_json_corrupt(tmp_path):
    (tmp_path / "spec.json").write_text('{"fields": [')
    with pytest.raises(DataFileError, match="not a readable PairedDataset JSON"):
        PairedDataset.load(tmp_path / "spec.json")


# --------------------------------------------------------------------- staining API
@pytest.fixture(scope="module")
def model():
    return vsgan.Pix2PixHD(1, 1, input_channels=["phase"], output_channels=["nuclei"], **TINY)


STAIN_CASES = {
    "wrong-channel-count": (np.zeros((16, 16, 3), np.uint16), {}, "takes 1"),
    "channels-first": (np.zeros((1, 16, 16), np.uint16), {}, "np.moveaxis"),
    "nan-pixels": (np.full((16, 16), np.nan, np.float32), {}, "NaN or Inf"),
    "zero-size": (np.zeros((0, 16), np.float32), {}, "empty"),
    "string-dtype": (np.array([["a", "b"], ["c", "d"]]), {}, "not a number type"),
    "ragged-list": ([[1, 2], [3]], {}, "cannot be read as an array"),
    "negative-tile-size": (np.zeros((16, 16)), {"tile_size": -8}, "positive number"),
    "zero-samples": (np.zeros((16, 16)), {"samples": 0}, "whole number >= 1"),
    "overlap-beyond-tile": (np.zeros((16, 16)), {"tile_size": 16, "overlap": 99}, "overlap"),
}


@pytest.mark.parametrize("case", list(STAIN_CASES), ids=list(STAIN_CASES))
def test_stain_refuses(model, case):
    image, kwargs, excerpt = STAIN_CASES[case]
    with pytest.raises(InputError) as info:
        stain(model, image, **kwargs)
    assert excerpt in str(info.value)


# ------------------------------------------------------------------- model files
def lambda_keras(tmp):
    """A .keras whose Lambda would create `code_ran` if its code were ever run."""
    os.environ["VSGAN_TEST_MARKER"] = str(tmp / "code_ran")
    net = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Lambda(
                lambda x: (open(__import__("os").environ["VSGAN_TEST_MARKER"], "w").close(), x)[1]
            ),
        ]
    )
    net.save(tmp / "lambda.keras")
    (tmp / "code_ran").unlink()  # it ran here, while the model was built
    return tmp / "lambda.keras"


def plain_keras(tmp):
    keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(tmp / "plain.keras")
    return tmp / "plain.keras"


def keras_truncated(tmp):
    atomic_save(vsgan.Pix2PixHD(1, 1, **TINY), tmp / "m.keras")
    return _truncated(tmp / "m.keras")


def keras_random_bytes(tmp):
    (tmp / "r.keras").write_bytes(np.random.default_rng(8).bytes(1000))
    return tmp / "r.keras"


MODEL_CASES = {
    "keras-lambda-layer-safe-mode": (lambda_keras, ModelFileError, "safe_mode"),
    "keras-not-a-pix2pixhd": (plain_keras, ModelFileError, "not a vsgan Pix2PixHD"),
    "keras-truncated": (keras_truncated, ModelFileError, "written by vsgan"),
    "keras-random-bytes": (keras_random_bytes, ModelFileError, "written by vsgan"),
    "keras-missing": (lambda tmp: tmp / "gone.keras", ModelFileError, "no such file"),
    "unknown-preset": (lambda tmp: "isl-nucleii", UnknownPresetError, "Known presets"),
}


@pytest.mark.parametrize("case", list(MODEL_CASES), ids=list(MODEL_CASES))
def test_load_pretrained_refuses(tmp_path, case):
    make, error, excerpt = MODEL_CASES[case]
    source = make(tmp_path)
    with pytest.raises(error) as info:
        vsgan.load_pretrained(source)
    assert excerpt in str(info.value) and str(source) in str(info.value)
    assert not (tmp_path / "code_ran").exists()  # safe mode: the lambda never ran


@pytest.fixture
def preset_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "weights_dir", lambda: tmp_path)
    zoo.save_preset(vsgan.Pix2PixHD(1, 1, **TINY), "tiny", tmp_path, description="test")
    return tmp_path


def test_preset_checksum_mismatch(preset_dir):
    assert isinstance(vsgan.load_pretrained("tiny"), vsgan.Pix2PixHD)
    weights = preset_dir / "tiny.weights.h5"
    weights.write_bytes(weights.read_bytes() + b"\0")
    with pytest.raises(ChecksumError, match=r"does not match the recorded.*Reinstall") as info:
        vsgan.load_pretrained("tiny")
    assert str(weights) in str(info.value)


def test_preset_weights_of_another_architecture(preset_dir):
    card = json.loads((preset_dir / "tiny.json").read_text())
    card["config"] = vsgan.Pix2PixHD(1, 1, **{**TINY, "ngf": 16}).get_config()
    (preset_dir / "tiny.json").write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="does not fit the architecture of preset 'tiny'"):
        vsgan.load_pretrained("tiny")


# Torch checkpoints go through the restricted unpickler only; a pickle that would run code
# is refused and runs nothing: tests/test_zoo_pix2pixhd.py::test_code_running_pickle_is_refused...


# ----------------------------------------------------------------------- downloads
def test_dataset_download_with_wrong_sha256_is_deleted(tmp_path, monkeypatch):
    from vsgan.datasets import sources

    def fake_get_file(fname, origin, file_hash, cache_dir, cache_subdir):
        path = Path(cache_dir) / cache_subdir / fname
        path.write_bytes(b"tampered or truncated download")
        return str(path)  # a download function that does not check: vsgan must

    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    with pytest.raises(ChecksumError, match="was deleted") as info:
        sources.fetch("isl-condition-b", tmp_path)
    assert "sha256" in str(info.value)
    assert [p for p in (tmp_path / "isl-condition-b").iterdir()] == []


def test_dataset_download_refused_by_keras_is_deleted_too(tmp_path, monkeypatch):
    from vsgan.datasets import sources

    def keras_like(fname, origin, file_hash, cache_dir, cache_subdir):
        (Path(cache_dir) / cache_subdir / fname).write_bytes(b"bad")
        raise ValueError("Incomplete or corrupted file detected.")  # what Keras raises

    monkeypatch.setattr(keras.utils, "get_file", keras_like)
    with pytest.raises(ChecksumError, match="was deleted"):
        sources.fetch("isl-condition-b", tmp_path)
    assert list((tmp_path / "isl-condition-b").iterdir()) == []


def test_a549_download_with_wrong_sha256_is_deleted(tmp_path, monkeypatch):
    from vsgan.zoo import a549

    monkeypatch.setattr(a549, "A549_SHA256", "0" * 64)

    def fake_get_file(fname, origin, file_hash, cache_dir, cache_subdir):
        path = Path(cache_dir) / fname
        path.write_bytes(b"PK not the archive")
        return str(path)

    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    with pytest.raises(ChecksumError, match="was deleted") as info:
        a549.load_a549(cache_dir=tmp_path)
    assert "0" * 64 in str(info.value)
    assert list(tmp_path.iterdir()) == []

    # A damaged archive already in the cache is not used either.
    (tmp_path / a549.A549_ARCHIVE_NAME).write_bytes(b"stale")
    with pytest.raises(ChecksumError):
        a549.load_a549(cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------------- recipes
RECIPE_CASES = {
    "recipe-json-syntax-error": ('{"epochs": 3,', "not a readable recipe"),
    "recipe-not-a-mapping": ("[1, 2]", "a recipe is a mapping"),
    "recipe-unknown-key": ('{"epochz": 3}', "unknown recipe keys ['epochz']"),
    "recipe-negative-epochs": ('{"epochs": -1}', "epochs=-1"),
    "recipe-string-batch-size": ('{"batch_size": "four"}', "batch_size='four'"),
}


@pytest.mark.parametrize("case", list(RECIPE_CASES), ids=list(RECIPE_CASES))
def test_recipe_file_refused(tmp_path, case):
    text, excerpt = RECIPE_CASES[case]
    (tmp_path / "r.json").write_text(text)
    with pytest.raises(InputError) as info:
        Recipe.load(tmp_path / "r.json")
    assert excerpt in str(info.value) and str(tmp_path / "r.json") in str(info.value)


# ------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def model_file(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    atomic_save(model, path)
    return path


def _cli_case(tmp: Path, model_file: Path, case: str):
    """(argv, excerpt, paths that must not be written) for one CLI row."""
    out = tmp / "out"
    good = _tif(tmp, GOOD, "good.tif")
    if case == "predict-unknown-preset":
        return ["predict", "isl-nucleii", str(good), "-o", str(out)], "Known presets", [out]
    if case == "predict-missing-input":
        return ["predict", str(model_file), str(tmp / "nope.tif"), "-o", str(out)], "no such", [out]
    if case == "predict-corrupt-input-among-good":
        (tmp / "sub").mkdir()
        bad = tiff_truncated(tmp / "sub")
        argv = ["predict", str(model_file), str(good), str(bad), "-o", str(out)]
        return argv, "not a readable TIFF", [out]
    if case == "predict-wrong-channel-count":
        rgb = _tif(tmp, np.zeros((16, 16, 3), np.uint16), "rgb.tif")
        argv = ["predict", str(model_file), str(good), str(rgb), "-o", str(out)]
        return argv, "takes 1", [out]
    if case == "predict-output-exists":
        out.mkdir()
        (out / "previous.tif").write_bytes(b"keep me")
        return ["predict", str(model_file), str(good), "-o", str(out)], "--overwrite", []
    if case == "predict-bad-tile-size":
        argv = ["predict", str(model_file), str(good), "-o", str(out), "--tile-size", "0"]
        return argv, "tile_size=0", []
    if case == "train-unknown-preset":
        return ["train", "--preset", "isl-nucleus", "--out", str(out)], "Known presets", [out]
    if case == "train-corrupt-recipe":
        (tmp / "r.json").write_text("{oops")
        argv = ["train", "--config", str(tmp / "r.json"), "--out", str(out)]
        return argv, "not a readable recipe", [out]
    if case == "train-patch-larger-than-images":
        recipe = {"dataset": "synthetic", "dataset_args": {"n_fields": 3, "size": 32}}
        (tmp / "r.json").write_text(json.dumps({**recipe, "patch_size": 64}))
        argv = ["train", "--config", str(tmp / "r.json"), "--out", str(out)]
        return argv, "smaller patch_size", [out]
    if case == "train-bad-model-settings":
        recipe = {"dataset": "synthetic", "dataset_args": {"n_fields": 3, "size": 32}}
        (tmp / "r.json").write_text(
            json.dumps({**recipe, "patch_size": 16, "model": {"ngf": "wide"}})
        )
        argv = ["train", "--config", str(tmp / "r.json"), "--out", str(out)]
        return argv, "Pix2PixHD", [out]
    if case == "export-onto-existing":
        out.mkdir()
        (out / "saved_model.pb").write_bytes(b"previous export")
        return ["export", str(model_file), str(out)], "overwrite", []
    if case == "convert-garbage-checkpoint":
        (tmp / "net_G.pth").write_bytes(b"\x80\x04garbage")
        argv = ["convert", str(tmp / "net_G.pth"), str(tmp / "out.keras")]
        return argv, str(tmp / "net_G.pth"), [tmp / "out.keras"]
    if case == "evaluate-unknown-dataset":
        argv = ["evaluate", str(model_file), "no-such-dataset", "-o", str(out)]
        return argv, "no-such-dataset", [out / "metrics.csv"]
    raise AssertionError(case)


CLI_CASES = [
    "predict-unknown-preset",
    "predict-missing-input",
    "predict-corrupt-input-among-good",
    "predict-wrong-channel-count",
    "predict-output-exists",
    "predict-bad-tile-size",
    "train-unknown-preset",
    "train-corrupt-recipe",
    "train-patch-larger-than-images",
    "train-bad-model-settings",
    "export-onto-existing",
    "convert-garbage-checkpoint",
    "evaluate-unknown-dataset",
]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", CLI_CASES, ids=CLI_CASES)
def test_cli_one_line_exit_2_nothing_written(tmp_path, model_file, case, capsys):
    argv, excerpt, absent = _cli_case(tmp_path, model_file, case)
    before = _snapshot(tmp_path)
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith(f"vsgan {argv[0]}: error: ")
    assert excerpt in err and "Traceback" not in err
    assert _snapshot(tmp_path) == before  # nothing overwritten, nothing half-written
    for path in absent:
        assert not path.exists()


def test_cli_error_in_a_real_process_has_no_traceback(tmp_path, model_file):
    bad = tiff_random_bytes(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "vsgan.cli", "predict", str(model_file), str(bad)]
        + ["-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    lines = [line for line in done.stderr.splitlines() if line.startswith("vsgan ")]
    assert done.returncode == 2
    assert len(lines) == 1 and str(bad) in lines[0] and "Fix" in lines[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_every_vsgan_error_is_a_vsgan_error():
    for error in (DataFileError, InputError, ModelFileError, ChecksumError, UnknownPresetError):
        assert issubclass(error, VsganError)
