"""Your own data end to end, as the README's "Train on your own data" section runs it.

A folder of fields, each with three label-free z-planes as separate TIFFs named so that text
order is wrong (z10 sorts before z2 and z5) and the nuclear stain; `vsgan train`, `predict`
and `evaluate` run as subprocesses with a tiny architecture.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from vsgan.datasets.synthetic import synthetic_field

PLANES = ("z2", "z5", "z10")
TINY_FLAGS = ["--ngf", "8", "--n-downsample", "2", "--n-blocks", "1", "--ndf", "8", "--num-d", "1"]


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(img, sigma)


def write_field(folder: Path, rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """phase_z2/z5/z10.tif (8-bit, distinct defocus) and nuclei.tif; returns the nuclei."""
    phase, nuclei, _ = synthetic_field(rng, size)
    planes = {"z2": _blur(phase, 2.0), "z5": phase, "z10": -_blur(phase, 4.0)}  # z10: inverted
    folder.mkdir(parents=True)
    for name, plane in planes.items():
        lo, hi = np.percentile(plane, [0.5, 99.5])
        img = np.clip((plane - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)
        tifffile.imwrite(folder / f"phase_{name}.tif", img)
    tifffile.imwrite(folder / "nuclei.tif", nuclei)
    return nuclei


def vsgan(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VSGAN_DEBUG": ""}
    return subprocess.run(
        [sys.executable, "-m", "vsgan.cli", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def own_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(3)
    for k in range(3):
        write_field(root / "data" / f"field{k + 1}", rng)
    write_field(root / "heldout" / "field9", rng)
    return root


@pytest.fixture(scope="module")
def trained(own_data) -> tuple[Path, subprocess.CompletedProcess]:
    run = vsgan(
        "train",
        "--data", "data",
        "--inputs", "phase_z*.tif",
        "--targets", "nuclei.tif",
        "--out", "run",
        "--epochs", "4",
        "--steps-per-epoch", "12",
        "--patch-size", "64",
        "--val-tile-size", "64",
        "--precision", "float32",
        *TINY_FLAGS,
        cwd=own_data,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return own_data, run


def test_train_names_channels_in_natural_order_and_validates_whole_fields(trained):
    root, run = trained
    assert "phase_z2', 'phase_z5', 'phase_z10'" in run.stdout
    recipe = json.loads((root / "run" / "recipe.json").read_text())
    assert recipe["dataset_args"] == {"inputs": ["phase_z*.tif"], "targets": ["nuclei.tif"]}
    with open(root / "run" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    for key in ("val_field_pearson_r", "val_field_ssim", "val_field_psnr", "val_patch_pearson_r"):
        assert all(np.isfinite(float(r[key])) for r in rows), key
    best = json.loads((root / "run" / "model_best.keras.json").read_text())
    assert best["val_field_pearson_r"] == pytest.approx(
        max(float(r["val_field_pearson_r"]) for r in rows), abs=1e-6
    )
    assert (root / "run" / "model_best.keras").is_file()
    for alarming in ("remapper failed", "ran out of data", "cuInit"):
        assert alarming not in run.stderr + run.stdout, alarming


def test_predict_an_unseen_field_tracks_its_target(trained):
    root, _ = trained
    run = vsgan("predict", "run/model_best.keras", "heldout/field9", "-o", "pred", cwd=root)
    assert run.returncode == 0, run.stderr[-3000:]
    pred = tifffile.imread(root / "pred" / "field9_nuclei_prediction.tif")
    target = tifffile.imread(root / "heldout" / "field9" / "nuclei.tif")
    r = np.corrcoef(pred.ravel(), target.ravel().astype(np.float64))[0, 1]
    assert r > 0.5, r


def test_evaluate_a_folder_of_held_out_fields(trained):
    root, _ = trained
    run = vsgan("evaluate", "run/model.keras", "heldout", "-o", "eval", "--no-figures", cwd=root)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads((root / "eval" / "metrics.json").read_text())
    assert rows[0]["field"] == "field9" and rows[-1]["nuclei/pearson_r"] > 0.5


def test_fine_tune_from_a_model_with_the_same_channels(trained):
    root, _ = trained
    run = vsgan(
        "train", "--data", "data", "--inputs", "phase_z*.tif", "--targets", "nuclei.tif",
        "--from", "run/model.keras", "--out", "tuned", "--epochs", "1", "--steps-per-epoch", "4",
        "--patch-size", "64", "--val-tile-size", "64", "--precision", "float32", cwd=root,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    import keras

    base = keras.models.load_model(root / "run" / "model.keras", compile=False)
    tuned = keras.models.load_model(root / "tuned" / "model.keras", compile=False)
    assert tuned.get_config()["normalization"] == base.get_config()["normalization"]
    assert tuned.ngf == 8 and tuned.input_channels == base.input_channels


def test_a_folder_of_unmatched_names_is_refused_with_one_line(trained, tmp_path):
    root, _ = trained
    rng = np.random.default_rng(5)
    field = tmp_path / "other"
    write_field(field, rng, size=64)
    for k, name in enumerate(("phase_z2", "phase_z5", "phase_z10")):
        (field / f"{name}.tif").rename(field / f"plane{k + 1}.tif")
    run = vsgan("predict", root / "run" / "model.keras", field, "-o", tmp_path / "o", cwd=root)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "phase_z2" in lines[0] and "plane1.tif" in lines[0] and "Fix:" in lines[0]
    assert not (tmp_path / "o").exists()
