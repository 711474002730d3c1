"""bioimage.io packages, checked with bioimageio.core's own `test_model` (the Model Zoo's check).

One package per preset (built once per session: each build exports a SavedModel and an ONNX
graph) plus one tiny model with per-field input normalisation (bioimage.io's `scale_range`).
"""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import yaml
from PIL import Image

import vsgan
from conftest import TINY, shared_data_dir
from vsgan.data.normalize import Normalization
from vsgan.errors import InputError
from vsgan.inference.bioimageio import export_bioimageio, processing_steps
from vsgan.zoo.packages import preset_package

PRESETS = ["isl-nuclei", "jurkat-dna"]


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """isl-nuclei through the library, jurkat-dna through the CLI, as users would."""
    data = shared_data_dir()
    if data is None:
        pytest.skip("real data not found: set VSGAN_DATA or put shared/data beside the repo")
    folder = tmp_path_factory.mktemp("bioimageio")
    isl = folder / "isl-nuclei.zip"
    model = vsgan.load_pretrained("isl-nuclei")
    export_bioimageio(model, isl, **preset_package("isl-nuclei", data))
    run = subprocess.run(
        [sys.executable, "-m", "vsgan.cli", "export", "jurkat-dna", "jurkat-dna.zip"]
        + ["--format", "bioimageio", "--data", str(data)],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr
    return {"isl-nuclei": isl, "jurkat-dna": folder / "jurkat-dna.zip"}


def _rdf(path):
    with zipfile.ZipFile(path) as archive:
        return yaml.safe_load(archive.read("rdf.yaml")), archive


def _npy(path, name):
    import io

    with zipfile.ZipFile(path) as archive:
        return np.load(io.BytesIO(archive.read(name)))


def _steps(steps):
    return [s for s in steps if s["id"] != "ensure_dtype"]  # bioimageio.spec adds these


def _failures(summary):
    return [d.name + ": " + "; ".join(e.msg for e in d.errors) for d in summary.details if d.errors]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_package_passes_bioimageio_core_test_model(packages, preset, tmp_path, monkeypatch):
    from bioimageio.core import test_model

    monkeypatch.chdir(tmp_path)  # it unzips the SavedModel into the working directory
    summary = test_model(packages[preset])
    assert summary.status == "passed", _failures(summary)
    tested = {d.name for d in summary.details if d.status == "passed"}
    assert any("(onnx)" in n for n in tested) and any("saved_model" in n for n in tested)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_package_describes_the_model(packages, preset):
    rdf, _ = _rdf(packages[preset])
    record = vsgan.list_pretrained()[preset]
    assert rdf["format_version"].startswith("0.5.")
    assert set(rdf["weights"]) == {"tensorflow_saved_model_bundle", "onnx"}
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    assert [a.get("id", a["type"]) for a in inp["axes"]] == ["batch", "y", "x", "channel"]
    assert inp["axes"][3]["channel_names"] == record["input_channels"]
    assert out["axes"][3]["channel_names"] == record["output_channels"]
    # dataset-level statistics: fixed scale_linear in, its inverse out (vsgan's stored values)
    norm = record["config"]["normalization"]
    (pre,), (post,) = _steps(inp["preprocessing"]), _steps(out["postprocessing"])
    assert pre["id"] == post["id"] == "scale_linear"
    offset, scale = np.array(norm["input"]["offset"]), np.array(norm["input"]["scale"])
    np.testing.assert_allclose(pre["kwargs"]["gain"], 1 / scale)
    np.testing.assert_allclose(pre["kwargs"]["offset"], -offset / scale)
    np.testing.assert_allclose(post["kwargs"]["gain"], norm["target"]["scale"])
    np.testing.assert_allclose(post["kwargs"]["offset"], norm["target"]["offset"])
    assert rdf["documentation"]["source"] == f"{preset}.md"
    assert [c["source"] for c in rdf["covers"]] == [f"{preset}_heldout.png"]
    with zipfile.ZipFile(packages[preset]) as archive:
        card = archive.read(f"{preset}.md").decode()
        assert card.startswith(f"# {preset}") and f"]({preset}_heldout.png)" in card
        assert f"{preset}_heldout.png" in archive.namelist()
    assert rdf["license"] == "BSD-3-Clause"
    cited = " ".join(c["text"] for c in rdf["cite"])
    assert "Wang" in cited and "2018" in cited
    assert ("Christiansen" if preset == "isl-nuclei" else "Blasi") in cited


def test_isl_test_input_is_the_held_out_quadrant(packages):
    """Read with PIL from the PNGs, not with vsgan: rows and columns 512-1023 of every plane."""
    x = _npy(packages["isl-nuclei"], "test_input.npy")
    assert x.shape == (1, 512, 512, 13) and x.dtype == np.float32
    folder = shared_data_dir() / "isl-condition-b"
    for z in (0, 12):
        plane = np.asarray(Image.open(folder / f"phase_contrast_z{z:02d}.png"), np.float32)
        np.testing.assert_array_equal(x[0, ..., z], plane[512:, 512:])
    y = _npy(packages["isl-nuclei"], "test_output.npy")
    assert y.shape == (1, 512, 512, 1) and np.isfinite(y).all()


def test_jurkat_test_input_is_a_held_out_cell(packages):
    import h5py

    x = _npy(packages["jurkat-dna"], "test_input.npy")
    assert x.shape == (1, 40, 40, 2)
    with h5py.File(shared_data_dir() / "mlcp-jurkat" / "jurkat_ifc.h5", "r") as f:
        cells = {name: np.asarray(f[name]) for name in ("brightfield", "darkfield")}
    held_out = [
        i
        for i in range(0, len(cells["brightfield"]), 10)  # every cell with index % 10 == 0
        if np.array_equal(cells["brightfield"][i], x[0, ..., 0])
    ]
    assert held_out and np.array_equal(cells["darkfield"][held_out[0]], x[0, ..., 1])


def test_tiny_model_with_per_field_input_normalisation(tmp_path, monkeypatch):
    """Per-field percentiles become scale_range (+ scale_linear to [-1, 1]); synthetic test data."""
    from bioimageio.core import test_model

    monkeypatch.chdir(tmp_path)
    model = vsgan.Pix2PixHD(
        2,
        1,
        dropout=0.2,
        input_channels=["bf", "df"],
        output_channels=["dna"],
        normalization={
            "input": Normalization("percentile", per_field=True, low=1, high=99).get_config(),
            "target": Normalization.fixed(4400).get_config(),
        },
        **TINY,
    )
    path = export_bioimageio(model, tmp_path / "tiny.zip", name="tiny vsgan model")
    summary = test_model(path)
    assert summary.status == "passed", _failures(summary)
    rdf, _ = _rdf(path)
    steps = _steps(rdf["inputs"][0]["preprocessing"])
    assert [s["id"] for s in steps] == ["scale_range", "scale_linear"]
    assert steps[0]["kwargs"]["min_percentile"] == 1 and steps[0]["kwargs"]["max_percentile"] == 99
    assert json.dumps(rdf["config"]["vsgan"]["normalization"])  # stored for the record
    with pytest.raises(Exception, match="overwrite"):
        export_bioimageio(model, path)


def test_median_iqr_per_field_has_no_bioimageio_equivalent():
    with pytest.raises(InputError, match="Fix:"):
        processing_steps(Normalization("median_iqr", per_field=True), "input", 1)
    assert processing_steps(Normalization("identity"), "input", 3) == []


def test_preset_without_data_falls_back_to_synthetic_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("VSGAN_DATA", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.warns(UserWarning, match="synthetic"):
        kwargs = preset_package("jurkat-dna", tmp_path)
    assert "test_input" not in kwargs and kwargs["name"] == "vsgan jurkat-dna"
