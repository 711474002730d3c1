"""Outputs the field's tools open, checked with those tools (never with vsgan's own readers).

- OME-TIFF: read back with tifffile (channel names, float32, pixel size and unit copied from OME,
  ImageJ and resolution-tag inputs, clean names).
- OME-Zarr fields and HCS plates: validated by ome-zarr-models, opened by napari-ome-zarr's
  reader and by iohub 0.2 (VisCy's library; it pins zarr < 3, so it runs in its own virtual
  environment: `$VSGAN_IOHUB_PYTHON`, made by `.ci/run`).
- Plates at scale: concurrent shards equal one unsharded run; a killed shard re-run completes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

import vsgan
from conftest import REPO, TINY
from vsgan.data import Normalization
from vsgan.io import ome_zarr, readers, writers
from vsgan.io.metadata import PixelSize

IOHUB_PYTHON = os.environ.get("VSGAN_IOHUB_PYTHON", "/tmp/vsgan-iohub/bin/python")
TARGETS = ["nuclei", "membrane"]
PLATE_POSITIONS = ["A/1/0", "A/1/1", "B/2/0", "B/2/1"]


def vsgan_cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "vsgan.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        **kwargs,
    )


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model = vsgan.Pix2PixHD(
        1,
        2,
        dropout=0.2,
        output_channels=TARGETS,
        input_channels=["phase"],
        normalization={
            "input": Normalization("percentile", per_field=True).get_config(),
            "target": Normalization.fixed([4400.0, 18372.0]).get_config(),
        },
        **TINY,
    )
    model.compile()
    model.save(path)
    return path


@pytest.fixture(scope="module")
def tiff_inputs(tmp_path_factory):
    """Three fields whose pixel size is told three ways: OME-XML, ImageJ, resolution tags."""
    folder = tmp_path_factory.mktemp("tiffs")
    rng = np.random.default_rng(0)
    image = lambda: rng.integers(0, 4000, (40, 56), dtype=np.uint16)  # noqa: E731
    tifffile.imwrite(
        folder / "a.ome.tif",
        image(),
        ome=True,
        metadata={"axes": "YX", "PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65},
    )
    tifffile.imwrite(
        folder / "b.tif",
        image(),
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.5),
        metadata={"unit": "um"},
    )
    tifffile.imwrite(
        folder / "c.tif", image(), resolution=(1e4 / 0.8, 1e4 / 0.8), resolutionunit="CENTIMETER"
    )
    return folder


EXPECTED_SIZE = {"a": 0.65, "b": 0.5, "c": 0.8}


def test_pixel_size_is_read_from_ome_imagej_and_resolution_tags(tiff_inputs, tmp_path):
    for name, size in EXPECTED_SIZE.items():
        path = next(tiff_inputs.glob(f"{name}.*"))
        assert readers.pixel_size(path) == PixelSize(size, size, "micrometer"), name
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((4, 4), "uint16"))
    assert readers.pixel_size(plain) is None  # no unit: no physical size is invented
    nm = tmp_path / "nm.tif"
    tifffile.imwrite(
        nm,
        np.zeros((4, 4), "uint16"),
        imagej=True,
        resolution=(0.01, 0.02),
        metadata={"unit": "nm"},
    )
    assert readers.pixel_size(nm) == PixelSize(50, 100, "nanometer")


def _ome(path):
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
        page = tif.pages[0]
        return series.axes, series.dtype, series.asarray(), pixels, page.tags


def test_predict_writes_one_ome_tiff_per_field_like_its_input(tiny_model, tiff_inputs, tmp_path):
    out = tmp_path / "out"
    run = vsgan_cli("predict", tiny_model, tiff_inputs, "-o", out, "--samples", "2", "--quiet")
    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == [
        f"{n}_prediction.ome.tif" for n in ("a", "b", "c")
    ]
    names = [f"{t}_prediction" for t in TARGETS] + [f"{t}_std" for t in TARGETS]
    for field, size in EXPECTED_SIZE.items():
        axes, dtype, data, pixels, tags = _ome(out / f"{field}_prediction.ome.tif")
        assert axes == "CYX" and dtype == np.float32 and data.shape == (4, 40, 56)
        assert [c["Name"] for c in pixels["Channel"]] == names
        assert pixels["PhysicalSizeX"] == size and pixels["PhysicalSizeY"] == size
        assert pixels["PhysicalSizeXUnit"] == "\u00b5m"
        # Resolution tags too, for readers that ignore OME-XML (pixels per centimeter).
        num, den = tags["XResolution"].value
        assert abs(num / den - 1e4 / size) < 1e-3 and tags["ResolutionUnit"].value == 3
        assert data[2:].max() > 0 and 0 <= data[0].min() and data[0].max() <= 4400.01


def test_output_names_are_clean(tmp_path):
    result = vsgan.inference.StainResult(np.ones((8, 8, 1), "float32"), None)
    written = writers.write_stain(tmp_path / "field.ome", result, ["dapi"], "tiff")
    assert [p.name for p in written] == ["field_prediction.ome.tif"]
    written = writers.write_stain(tmp_path / "field.ome", result, ["dapi"], "zarr")
    assert [p.name for p in written] == ["field.zarr"]


# --------------------------------------------------------------------------- OME-Zarr checks
def _validate_image(path):
    from ome_zarr_models.v04.image import Image

    Image.from_zarr(zarr.open_group(str(path), mode="r"))


def _napari_layers(path):
    from napari_ome_zarr import napari_get_reader

    reader = napari_get_reader(str(path))
    assert reader is not None, f"napari-ome-zarr does not take {path}"
    layers = reader(str(path))
    assert layers, f"napari-ome-zarr read no layers from {path}"
    return layers


def _iohub(path, layout):
    if not Path(IOHUB_PYTHON).exists():
        pytest.skip(
            f"iohub venv absent ({IOHUB_PYTHON}): python -m venv /tmp/vsgan-iohub && "
            '/tmp/vsgan-iohub/bin/pip install "iohub<0.3" (as .ci/run does)'
        )
    script = (
        "import json, sys\n"
        "from iohub import open_ome_zarr\n"
        "out = {}\n"
        "with open_ome_zarr(sys.argv[1], layout=sys.argv[2], mode='r') as node:\n"
        "    items = node.positions() if sys.argv[2] == 'hcs' else [('', node)]\n"
        "    for name, pos in items:\n"
        "        out[name] = {'channels': pos.channel_names, 'scale': list(pos.scale),\n"
        "                     'shape': list(pos.data.shape), 'sum': float(pos.data[:].sum())}\n"
        "print(json.dumps(out))\n"
    )
    run = subprocess.run(
        [IOHUB_PYTHON, "-c", script, str(path), layout], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_predict_zarr_field_opens_in_the_fields_tools(tiny_model, tiff_inputs, tmp_path):
    out = tmp_path / "out"
    field = tiff_inputs / "b.tif"
    run = vsgan_cli("predict", tiny_model, field, "-o", out, "--format", "zarr", "--samples", "2")
    assert run.returncode == 0, run.stderr[-2000:]
    path = out / "b.zarr"
    _validate_image(path)
    names = [f"{t}_prediction" for t in TARGETS] + [f"{t}_std" for t in TARGETS]

    (data, meta, kind), *_ = _napari_layers(path)
    assert kind == "image" and meta["channel_axis"] == 1
    assert [n.split(": ")[-1] for n in meta["name"]] == names
    assert list(meta["scale"])[-2:] == [0.5, 0.5]
    assert len(meta["contrast_limits"]) == 4

    found = _iohub(path, "fov")[""]
    assert found["channels"] == names and found["scale"][-2:] == [0.5, 0.5]
    assert found["shape"] == [1, 4, 1, 40, 56]
    omero = dict(zarr.open_group(str(path), mode="r").attrs)["omero"]["channels"]
    assert all(set(c["window"]) == {"min", "max", "start", "end"} and c["color"] for c in omero)


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    path = tmp_path_factory.mktemp("plate") / "plate.zarr"
    rng = np.random.default_rng(1)
    fields = {p: rng.integers(0, 4000, (1, 2, 1, 48, 40), dtype=np.uint16) for p in PLATE_POSITIONS}
    ome_zarr.write_plate(path, fields, ["Phase3D", "Nuclei"], pixel_size=PixelSize(0.325, 0.325))
    return path


def test_predict_plate_gives_a_plate_the_fields_tools_open(tiny_model, plate, tmp_path):
    from ome_zarr_models.v04.hcs import HCS

    out = tmp_path / "out.zarr"
    run = vsgan_cli(
        "predict", tiny_model, plate, "-o", out, "--format", "zarr", "--samples", "2", "--quiet"
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "plate complete" in run.stdout
    HCS.from_zarr(zarr.open_group(str(out), mode="r"))
    for position in PLATE_POSITIONS:
        _validate_image(out / position)
    names = [f"{t}_prediction" for t in TARGETS] + [f"{t}_std" for t in TARGETS]

    found = _iohub(out, "hcs")
    assert sorted(found) == PLATE_POSITIONS
    for position in PLATE_POSITIONS:
        assert found[position]["channels"] == names
        assert found[position]["scale"][-2:] == [0.325, 0.325]
        assert found[position]["shape"] == [1, 4, 1, 48, 40]

    (data, meta, kind), *_ = _napari_layers(out)
    assert kind == "image" and [n.split(": ")[-1] for n in meta["name"]] == names
    assert list(meta["scale"])[-2:] == [0.325, 0.325]


def test_missing_zarr_extra_is_one_line_naming_the_install(
    tiny_model, tmp_path, monkeypatch, capsys
):
    from vsgan import cli

    monkeypatch.setitem(sys.modules, "ome_zarr.format", None)  # as if not installed
    field = tmp_path / "f.tif"
    tifffile.imwrite(field, np.zeros((16, 16), "uint16"))
    args = ["predict", str(tiny_model), str(field), "-o", str(tmp_path / "o"), "--format", "zarr"]
    assert cli.main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "vsgan[zarr]"' in err


# ------------------------------------------------------------------------------ plates at scale
def _plate_arrays(path):
    return {
        p: np.asarray(zarr.open_array(str(Path(path, p, "0")), mode="r")) for p in PLATE_POSITIONS
    }


@pytest.fixture(scope="module")
def unsharded(tiny_model, plate, tmp_path_factory):
    out = tmp_path_factory.mktemp("unsharded") / "out.zarr"
    run = vsgan_cli("predict", tiny_model, plate, "-o", out, "--quiet")
    assert run.returncode == 0, run.stderr[-2000:]
    return out


def test_concurrent_shards_equal_the_unsharded_plate(tiny_model, plate, unsharded, tmp_path):
    """Two array tasks of examples/slurm_array.sh, run at once as SLURM would."""
    out = tmp_path / "out.zarr"
    script = REPO / "examples" / "slurm_array.sh"
    # The script runs `vsgan`: the one of this interpreter.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    shards = [
        subprocess.Popen(
            ["bash", str(script), str(tiny_model), str(plate), str(out)],
            env={**os.environ, "PATH": path, "SLURM_ARRAY_TASK_ID": str(i)}
            | {"SLURM_ARRAY_TASK_COUNT": "2"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for shard in shards:
        _, err = shard.communicate(timeout=600)
        assert shard.returncode == 0, err[-2000:]
    expected, got = _plate_arrays(unsharded), _plate_arrays(out)
    for position in PLATE_POSITIONS:
        np.testing.assert_array_equal(got[position], expected[position])
    assert zarr.open_group(str(out), mode="r").attrs.asdict() == (
        zarr.open_group(str(unsharded), mode="r").attrs.asdict()
    )
    assert not list(out.rglob(".tmp-*"))


KILLED_AT_SECOND_POSITION = """
import os, sys
from vsgan.io import ome_zarr
from vsgan import cli
calls = []
finish = ome_zarr.finish_image
def dies(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:  # the second position's data is written, its metadata not yet
        os._exit(9)
    return finish(*args, **kwargs)
ome_zarr.finish_image = dies
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_killed_shard_rerun_completes_the_plate(tiny_model, plate, unsharded, tmp_path):
    out = tmp_path / "out.zarr"
    args = ["predict", str(tiny_model), str(plate), "-o", str(out), "--shard", "0/1", "--quiet"]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AT_SECOND_POSITION, *args], capture_output=True, text=True
    )
    assert killed.returncode == 9, killed.stderr[-2000:]
    complete = [p for p in PLATE_POSITIONS if (out / p).exists()]
    assert complete == PLATE_POSITIONS[:1]  # never a half-written position in place
    assert list(out.rglob(".tmp-*"))  # the half-written one lies aside

    run = vsgan_cli(*args)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "3 position(s) stained, 1 already complete; plate complete" in run.stdout
    assert not list(out.rglob(".tmp-*"))
    expected, got = _plate_arrays(unsharded), _plate_arrays(out)
    for position in PLATE_POSITIONS:
        np.testing.assert_array_equal(got[position], expected[position])


def test_a_shard_refuses_an_output_from_other_settings(tiny_model, plate, unsharded, tmp_path):
    from vsgan.inference.plate import predict_plate

    before = (unsharded / ".zattrs").read_text()
    loaded = __import__("keras").saving.load_model(tiny_model)
    with pytest.raises(vsgan.errors.VsganError, match="--overwrite"):
        predict_plate(loaded, plate, unsharded, samples=3, model_name=str(tiny_model))
    assert (unsharded / ".zattrs").read_text() == before


def test_the_kubernetes_job_runs_one_shard_per_index():
    import yaml

    job = yaml.safe_load((REPO / "examples" / "k8s_indexed_job.yaml").read_text())
    spec = job["spec"]
    command = " ".join(spec["template"]["spec"]["containers"][0]["args"])
    assert spec["completionMode"] == "Indexed"
    assert f'--shard "${{JOB_COMPLETION_INDEX}}/{spec["completions"]}"' in command
