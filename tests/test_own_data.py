"""Your own data end to end, as the README's "Train on your own data" section runs it.

A folder of fields, each with three label-free z-planes as separate TIFFs named so that text
order is wrong (z10 sorts before z2 and z5) and the nuclear stain; the README's own commands
(`vsgan train`, `predict`, `evaluate`, fine-tuning) run as subprocesses, with a tiny
architecture and budget added.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from vsgan.datasets.synthetic import synthetic_field

REPO = Path(__file__).resolve().parents[1]
TINY_FLAGS = ["--ngf", "8", "--n-downsample", "2", "--n-blocks", "1", "--ndf", "8", "--num-d", "1"]
QUICK = ["--epochs", "4", "--steps-per-epoch", "12", "--patch-size", "64", "--val-tile-size", "64"]


def readme_commands() -> list[list[str]]:
    """The `vsgan ...` lines of the README's "Train on your own data" section, as argv lists."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Train on your own data", 1)[1].split("\n## ", 1)[0]
    lines = re.findall(r"^\s*(vsgan (?:[^\n]*\\\n)*[^\n]*)$", section, re.MULTILINE)
    return [shlex.split(line.replace("\\\n", " "))[1:] for line in lines]


def readme(command: str, **replace: str) -> list[str]:
    """The README's first `vsgan <command> --data mydata ...` line, paths replaced."""
    for argv in readme_commands():
        if argv[0] == command and ("--from" in argv) == ("from" in replace):
            return [replace.get(a, a) for a in argv]
    raise AssertionError(f"README has no 'vsgan {command}' line in 'Train on your own data'")


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(img, sigma)


def write_field(folder: Path, rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """bf_z2/z5/z10.tif (8-bit, distinct defocus) and dapi.tif, as the README lays them out."""
    phase, nuclei, _ = synthetic_field(rng, size)
    planes = {"z2": _blur(phase, 2.0), "z5": phase, "z10": -_blur(phase, 4.0)}  # z10: inverted
    folder.mkdir(parents=True)
    for name, plane in planes.items():
        lo, hi = np.percentile(plane, [0.5, 99.5])
        img = np.clip((plane - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)
        tifffile.imwrite(folder / f"bf_{name}.tif", img)
    tifffile.imwrite(folder / "dapi.tif", nuclei)
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
        write_field(root / "mydata" / f"field{k + 1}", rng)
    write_field(root / "heldout" / "field9", rng)
    return root


@pytest.fixture(scope="module")
def trained(own_data) -> tuple[Path, subprocess.CompletedProcess]:
    argv = readme("train")  # ... --time-limit 45m: --epochs 4 bounds it here
    run = vsgan(*argv, *QUICK, "--precision", "float32", *TINY_FLAGS, cwd=own_data)
    assert run.returncode == 0, run.stderr[-3000:]
    return own_data, run


def test_train_names_channels_in_natural_order_and_validates_whole_fields(trained):
    root, run = trained
    assert "['bf_z2', 'bf_z5', 'bf_z10'] -> ['dapi']" in run.stdout
    assert "validating on ['field" in run.stdout
    recipe = json.loads((root / "run" / "recipe.json").read_text())
    assert recipe["dataset_args"] == {"inputs": ["bf_*.tif"], "targets": ["dapi.tif"]}
    assert recipe["time_limit"] == 45 * 60
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
    run = vsgan(*readme("predict"), cwd=root)
    assert run.returncode == 0, run.stderr[-3000:]
    target = tifffile.imread(root / "heldout" / "field9" / "dapi.tif")
    stained = tifffile.imread(root / "stained" / "field9_prediction.ome.tif")
    pred = stained.reshape(-1, *target.shape)[0]  # one OME-TIFF per field, dapi first
    r = np.corrcoef(pred.ravel(), target.ravel().astype(np.float64))[0, 1]
    assert r > 0.5, r


def test_evaluate_a_folder_of_held_out_fields(trained):
    root, _ = trained
    run = vsgan(*readme("evaluate"), "--no-figures", cwd=root)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads((root / "scores" / "metrics.json").read_text())
    assert rows[0]["field"] == "field9" and rows[-1]["dapi/pearson_r"] > 0.5


def test_fine_tune_from_a_model_with_the_same_channels(trained):
    root, _ = trained
    # The README fine-tunes a preset on data named after its channels; here the model trained
    # above plays the preset (same code path: weights, architecture and normalisation).
    argv = readme("train", **{"from": "", "isl-nuclei": "run/model.keras",
                              "phase_*.png": "bf_*.tif", "dapi*.png": "dapi.tif"})  # fmt: skip
    quick = ["--epochs", "1", "--steps-per-epoch", "4", "--patch-size", "64"]
    run = vsgan(*argv, *quick, "--val-tile-size", "64", "--precision", "float32", cwd=root)
    assert run.returncode == 0, run.stderr[-3000:]
    from vsgan import load_pretrained

    base = load_pretrained(str(root / "run" / "model.keras"))
    tuned = load_pretrained(str(root / "tuned" / "model.keras"))
    assert tuned.get_config()["normalization"] == base.get_config()["normalization"]
    assert tuned.ngf == 8 and tuned.input_channels == base.input_channels


def test_a_folder_of_unmatched_names_is_refused_with_one_line(trained, tmp_path):
    root, _ = trained
    rng = np.random.default_rng(5)
    field = tmp_path / "other"
    write_field(field, rng, size=64)
    for k, name in enumerate(("bf_z2", "bf_z5", "bf_z10")):
        (field / f"{name}.tif").rename(field / f"plane{k + 1}.tif")
    run = vsgan("predict", root / "run" / "model.keras", field, "-o", tmp_path / "o", cwd=root)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "bf_z2" in lines[0] and "plane1.tif" in lines[0] and "Fix:" in lines[0]
    assert not (tmp_path / "o").exists()
