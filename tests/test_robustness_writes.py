"""Atomic writes (issue 7 item 3): a write that fails midway leaves the previous file intact
and no temporary file behind, for checkpoints, exports, predictions, metrics and figures."""

import hashlib
from pathlib import Path

import keras
import numpy as np
import pytest
import tifffile
from PIL import Image

import vsgan
from conftest import TINY
from vsgan.evaluation import report
from vsgan.evaluation.figures import panel
from vsgan.inference.export import export_generator
from vsgan.inference.stain import StainResult
from vsgan.io import writers
from vsgan.training.callbacks import atomic_save


class DiskFull(OSError):
    pass


def _digest(path: Path) -> dict[str, str]:
    """sha256 of a file, or of every file under a folder, by relative name."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {
        str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files
    }


def _dies_after_writing(target_arg=0):
    """A replacement writer that writes half a file at its destination, then fails."""

    def writer(*args, **kwargs):
        dest = args[target_arg] if len(args) > target_arg else None
        if isinstance(dest, (str, Path)):
            Path(dest).parent.mkdir(parents=True, exist_ok=True)
            if not Path(dest).is_dir():
                Path(dest).write_bytes(b"half a file")
        elif hasattr(dest, "write"):
            dest.write(b"half a file")
        raise DiskFull(28, "No space left on device")

    return writer


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.fixture(scope="module")
def model():
    return vsgan.Pix2PixHD(1, 1, **TINY)


def test_checkpoint(tmp_path, model, monkeypatch):
    path = tmp_path / "model.keras"
    atomic_save(model, path)
    before = _digest(path)
    monkeypatch.setattr(keras.Model, "save", lambda self, p, **k: _dies_after_writing()(p))
    with pytest.raises(DiskFull):
        atomic_save(model, path)
    assert _digest(path) == before
    assert _leftovers(tmp_path, {"model.keras"}) == []
    monkeypatch.undo()
    assert isinstance(vsgan.load_pretrained(path), vsgan.Pix2PixHD)


def test_exported_model(tmp_path, model, monkeypatch):
    path = tmp_path / "served"
    export_generator(model, path)
    before = _digest(path)
    archive_class = type(keras.export.ExportArchive())  # the backend's subclass
    monkeypatch.setattr(archive_class, "write_out", _dies_after_writing(1))
    with pytest.raises(DiskFull):
        export_generator(model, path, overwrite=True)
    assert _digest(path) == before
    assert _leftovers(tmp_path, {"served"}) == []


def test_exported_model_survives_a_failing_final_rename(tmp_path, model, monkeypatch):
    """Even when the swap itself fails, the previous export is put back."""
    import os

    path = tmp_path / "served"
    export_generator(model, path)
    before = _digest(path)
    real_replace = os.replace

    def replace(src, dst):
        name = Path(src).name
        if str(dst) == str(path) and name.startswith(".tmp-") and "old" not in name:
            raise DiskFull(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(DiskFull):
        export_generator(model, path, overwrite=True)
    assert _digest(path) == before
    assert _leftovers(tmp_path, {"served"}) == []


def _result():
    mean = np.random.default_rng(0).random((16, 16, 1)).astype("float32")
    return StainResult(mean=mean, std=0.1 * mean, samples=2, views=1, tiles=1)


@pytest.mark.parametrize("fmt", ["tiff", "zarr"])
def test_predictions(tmp_path, monkeypatch, fmt):
    written = writers.write_stain(tmp_path / "field", _result(), ["nuclei"], fmt)
    before = {k: v for p in written for k, v in _digest(p).items()}
    names = {p.name for p in written}
    if fmt == "tiff":
        monkeypatch.setattr(tifffile, "imwrite", _dies_after_writing())
    else:
        import zarr

        monkeypatch.setattr(zarr.Group, "create_array", _dies_after_writing(99))
    new = StainResult(mean=np.zeros((16, 16, 1), "float32"), std=None, samples=1, views=1, tiles=1)
    with pytest.raises(DiskFull):
        writers.write_stain(tmp_path / "field", new, ["nuclei"], fmt, overwrite=True)
    assert {k: v for p in written for k, v in _digest(p).items()} == before
    assert _leftovers(tmp_path, names) == []


def test_metrics_files(tmp_path, monkeypatch):
    import csv

    rows = [{"field": "a", "ssim": 0.5}, {"field": "mean", "ssim": 0.5}]
    report.write_metrics(tmp_path, rows)
    before = {**_digest(tmp_path / "metrics.csv"), **_digest(tmp_path / "metrics.json")}

    def dies(self, rows):
        raise DiskFull(28, "No space left on device")

    monkeypatch.setattr(csv.DictWriter, "writerows", dies)
    with pytest.raises(DiskFull):
        report.write_metrics(
            tmp_path, [{"field": "b", "ssim": 0.9}, {"field": "mean", "ssim": 0.9}]
        )
    after = {**_digest(tmp_path / "metrics.csv"), **_digest(tmp_path / "metrics.json")}
    assert after == before
    assert _leftovers(tmp_path, {"metrics.csv", "metrics.json"}) == []


def test_figure(tmp_path, monkeypatch):
    y = np.random.default_rng(1).random((24, 24))
    path = panel(y, y, 0.1 * y, y, tmp_path / "figure.png")
    before = _digest(path)
    monkeypatch.setattr(Image.Image, "save", lambda self, f, **k: _dies_after_writing()(f))
    with pytest.raises(DiskFull):
        panel(y, 1 - y, None, None, path)
    assert _digest(path) == before
    assert _leftovers(tmp_path, {"figure.png"}) == []
