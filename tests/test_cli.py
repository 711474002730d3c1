"""The `vsgan` command line, run as a user types it (subprocesses)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

import vsgan
from conftest import TINY
from vsgan.data import Normalization, PairedDataset

COMMANDS = ["train", "predict", "evaluate", "export", "convert", "models", "demo"]


def vsgan_cli(*args, cwd=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "vsgan.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A saved 1 -> 2 channel model with stored normalisation and channel names."""
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model = vsgan.Pix2PixHD(
        1,
        2,
        dropout=0.2,
        output_channels=["nuclei", "membrane"],
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


@pytest.fixture
def field(tmp_path):
    path = tmp_path / "field.tif"
    rng = np.random.default_rng(0)
    tifffile.imwrite(path, rng.integers(0, 4000, (70, 90), dtype=np.uint16))
    return path


def test_every_subcommand_has_help():
    for command in COMMANDS:
        run = vsgan_cli(command, "--help")
        assert run.returncode == 0 and "usage: vsgan " + command in run.stdout, command


def test_models_lists_presets_with_their_metrics():
    run = vsgan_cli("models")
    assert run.returncode == 0
    for name in vsgan.list_pretrained():
        assert name in run.stdout
    cards = json.loads(vsgan_cli("models", "--json").stdout)
    assert "a549" in cards


def test_predict_writes_named_tiffs_with_uncertainty_and_a_figure(tiny_model, field, tmp_path):
    out = tmp_path / "out"
    run = vsgan_cli(
        "predict", tiny_model, field, "-o", out, "--samples", "3", "--figure", "--quiet"
    )
    assert run.returncode == 0, run.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["field_figure.png", "field_prediction.ome.tif"]
    # One OME-TIFF per field: predictions then stds, in the model's channel order.
    nuclei, membrane, nuclei_std, _ = tifffile.imread(out / "field_prediction.ome.tif")
    assert nuclei.shape == (70, 90) and 0 <= nuclei.min() and nuclei.max() <= 4400.01
    assert nuclei_std.max() > 0


def test_predict_precision_flag_overrides_and_is_checked(tiny_model, field, tmp_path):
    outputs = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / precision
        run = vsgan_cli("predict", tiny_model, field, "-o", out, "--precision", precision)
        assert run.returncode == 0, run.stderr
        outputs[precision] = tifffile.imread(out / "field_prediction.ome.tif")[0]
    difference = np.abs(outputs["bfloat16"] - outputs["float32"])
    assert 0 < difference.max() < 0.05 * 4400  # computed in bfloat16, and close
    run = vsgan_cli("predict", tiny_model, field, "-o", tmp_path / "x", "--precision", "int8")
    assert run.returncode == 2 and "--precision" in run.stderr


def test_predict_refuses_to_overwrite_and_writes_ome_zarr_when_asked(tiny_model, field, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    run = vsgan_cli("predict", tiny_model, field, "-o", out)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "--overwrite" in run.stderr
    assert "Traceback" not in run.stderr
    run = vsgan_cli("predict", tiny_model, field, "-o", out, "--format", "zarr", "--overwrite")
    assert run.returncode == 0, run.stderr
    assert vsgan.io.channel_names(out / "field.zarr") == [
        "nuclei_prediction",
        "membrane_prediction",
    ]
    assert (out / "keep.txt").read_text() == "mine"


def test_unknown_model_and_missing_input_end_with_one_line(tiny_model, tmp_path):
    run = vsgan_cli("predict", "no-such-model", tmp_path, "-o", tmp_path / "o")
    assert run.returncode == 2 and "Known presets" in run.stderr and "Traceback" not in run.stderr
    run = vsgan_cli("predict", tiny_model, tmp_path / "missing.tif", "-o", tmp_path / "o")
    assert run.returncode == 2 and "missing.tif" in run.stderr and "Traceback" not in run.stderr


def test_export_saved_model(tiny_model, tmp_path):
    run = vsgan_cli("export", tiny_model, tmp_path / "served")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "served" / "saved_model.pb").is_file()
    again = vsgan_cli("export", tiny_model, tmp_path / "served")
    assert again.returncode == 2 and "overwrite" in again.stderr


def test_evaluate_prints_a_table_and_writes_csv_json_and_figures(tiny_model, tmp_path):
    rng = np.random.default_rng(1)
    data = tmp_path / "data"
    for name in ("a", "b", "c", "d"):
        (data / name).mkdir(parents=True)
        tifffile.imwrite(data / name / "phase.tif", rng.random((64, 64)).astype("float32"))
        tifffile.imwrite(data / name / "nuclei.tif", rng.random((64, 64)).astype("float32"))
        tifffile.imwrite(data / name / "membrane.tif", rng.random((64, 64)).astype("float32"))
    spec = PairedDataset.from_folder(
        data, ["phase.tif"], ["nuclei.tif", "membrane.tif"], test_fields=["b", "c"]
    )
    spec.save(tmp_path / "spec.json")
    out = tmp_path / "eval"
    run = vsgan_cli("evaluate", tiny_model, tmp_path / "spec.json", "-o", out)
    assert run.returncode == 0, run.stderr
    assert "nuclei/pearson_r" in run.stdout and "mean over 2 fields" in run.stdout
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["field"] for r in rows] == ["b", "c", "mean"]
    assert rows[-1]["nuclei/ssim"] == pytest.approx(
        (rows[0]["nuclei/ssim"] + rows[1]["nuclei/ssim"]) / 2
    )
    assert (out / "metrics.csv").read_text().startswith("field,")
    assert len(list(out.glob("*_figure.png"))) == 2


def test_train_runs_a_config_file_and_refuses_to_clobber_a_finished_run(tmp_path):
    recipe = {
        "dataset": "synthetic",
        "dataset_args": {"n_fields": 4, "size": 64},
        "model": {**TINY, "num_d": 1},
        "patch_size": 32,
        "batch_size": 2,
        "steps_per_epoch": 2,
        "epochs": 2,
        "niter": 1,
        "niter_decay": 1,
        "val_batches": 1,
    }
    config = tmp_path / "recipe.json"
    config.write_text(json.dumps(recipe))
    run = vsgan_cli("train", "--config", config, "--out", tmp_path / "run", "--quiet")
    assert run.returncode == 0, run.stderr[-3000:]
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert len(history) == 3 and "val_field_pearson_r" in history[0]
    assert "val_patch_pearson_r" in history[0]  # crop-level, labelled so
    assert list((tmp_path / "run" / "logs").iterdir())
    model = vsgan.load_pretrained(tmp_path / "run" / "model.keras")
    assert model.output_channels == ["nuclei", "membrane"]
    # Calibrated on the validation split after training, stored in the model (issue 13).
    calibration = json.loads((tmp_path / "run" / "calibration.json").read_text())
    assert model.calibration == calibration
    assert calibration["source"].endswith("val split") and calibration["pixels"] > 0
    again = vsgan_cli("train", "--config", config, "--out", tmp_path / "run")
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_demo_stains_the_held_out_quadrant(data_dir, tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "vsgan.cli",
            "demo",
            "--data",
            str(data_dir),
            "-o",
            str(tmp_path / "demo"),
            "--samples",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "rows 512-1023, columns 512-1023" in run.stdout
    out = tmp_path / "demo"
    assert (out / "heldout_figure.png").is_file() and (out / "metrics.csv").is_file()
    # One OME-TIFF: the prediction and its std.
    assert tifffile.imread(out / "heldout_prediction.ome.tif").shape == (2, 512, 512)
    rows = json.loads((out / "metrics.json").read_text())
    assert any(key.endswith("/pearson_r") for key in rows[0])
