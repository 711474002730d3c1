"""The model zoo: registry, offline loading of bundled presets, checksums, save_preset."""

import shutil

import numpy as np
import pytest

import vsgan
from conftest import TINY
from vsgan.data import Normalization
from vsgan.errors import ChecksumError, ModelFileError, UnknownPresetError
from vsgan.zoo import presets as zoo


def test_every_bundled_preset_loads_offline_and_stains():
    bundled = {n: c for n, c in vsgan.list_pretrained().items() if c["source"] == "bundled"}
    for name, card in bundled.items():
        model = vsgan.load_pretrained(name)
        assert model.input_channels == card["input_channels"]
        assert model.output_channels == card["output_channels"]
        assert {"pearson_r", "ssim", "psnr"} <= set(card["metrics"]["test"])
        assert (zoo.weights_dir() / f"{name}.md").is_file(), "every preset has a model card"
        x = np.random.default_rng(0).random((48, 40, model.in_channels)) * 1000
        result = vsgan.stain(model, x)
        assert result.mean.shape == (48, 40, model.out_channels)
        assert np.isfinite(result.mean).all()


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(UnknownPresetError, match="a549"):
        vsgan.load_pretrained("no-such-stain")


def _preset(folder):
    model = vsgan.Pix2PixHD(
        2,
        1,
        input_channels=["bf", "df"],
        output_channels=["dna"],
        normalization={
            "input": Normalization("meanstd", offset=[1.0, 2.0], scale=[3.0, 4.0]).get_config(),
            "target": Normalization.fixed(100.0).get_config(),
        },
        **TINY,
    )
    card = zoo.save_preset(model, "probe", folder, description="test", metrics={"test": {}})
    return model, card


def test_save_preset_round_trip(tmp_path, monkeypatch):
    model, card = _preset(tmp_path)
    assert card["sha256"] == zoo.sha256(tmp_path / "probe.weights.h5")
    monkeypatch.setattr(zoo, "weights_dir", lambda: tmp_path)
    loaded = vsgan.load_pretrained("probe")
    assert loaded.preprocessor == model.preprocessor
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_tampered_weights_are_refused(tmp_path, monkeypatch):
    _preset(tmp_path)
    with open(tmp_path / "probe.weights.h5", "r+b") as f:
        f.seek(-16, 2)
        f.write(b"\x00" * 16)
    monkeypatch.setattr(zoo, "weights_dir", lambda: tmp_path)
    with pytest.raises(ChecksumError, match="does not match"):
        vsgan.load_pretrained("probe")


def test_weights_for_another_architecture_are_refused(tmp_path, monkeypatch):
    _, card = _preset(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(tmp_path / "probe.json", other / "probe.json")
    bigger = vsgan.Pix2PixHD(2, 1, **{**TINY, "ngf": 16})
    bigger.save_weights(other / "probe.weights.h5")
    text = (
        (other / "probe.json")
        .read_text()
        .replace(card["sha256"], zoo.sha256(other / "probe.weights.h5"))
    )
    (other / "probe.json").write_text(text)
    monkeypatch.setattr(zoo, "weights_dir", lambda: other)
    with pytest.raises(ModelFileError, match="does not fit"):
        vsgan.load_pretrained("probe")


def test_keras_files_load_as_models(tmp_path):
    model = vsgan.Pix2PixHD(1, 1, **TINY)
    model.save(tmp_path / "m.keras")
    assert isinstance(vsgan.load_pretrained(tmp_path / "m.keras"), vsgan.Pix2PixHD)
    with pytest.raises(ModelFileError, match="no such file"):
        vsgan.load_pretrained(tmp_path / "missing.keras")
