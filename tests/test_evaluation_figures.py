"""`vsgan.evaluation.figures.panel`: layout, scaling, colour bars, atomic writes."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vsgan.errors import InputError
from vsgan.evaluation import figures


def images(shape=(48, 64), channels=1, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random(shape) * 1000
    mean = rng.random((*shape, channels)) * 4000
    return x, mean, 0.1 * mean, mean + rng.normal(0, 100, mean.shape)


def test_panel_writes_png_with_one_column_per_map(tmp_path):
    x, mean, std, target = images()
    full = Image.open(figures.panel(x, mean, std, target, tmp_path / "full.png"))
    no_std = Image.open(figures.panel(x, mean, None, target, tmp_path / "no_std.png"))
    bare = Image.open(figures.panel(x, mean, None, None, tmp_path / "bare.png"))
    assert full.format == "PNG" and full.mode == "RGB"
    cell = 64 + figures._PAD  # each column: image width + gap
    assert full.width - no_std.width == cell  # uncertainty column dropped
    assert no_std.width - bare.width == 2 * cell  # target and error columns dropped
    assert full.height == no_std.height == bare.height
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare.png", "full.png", "no_std.png"]


def test_one_row_per_output_channel_and_large_fields_shrink(tmp_path):
    x, mean, std, target = images((300, 600), channels=2)
    img = Image.open(figures.panel(x, mean, std, target, tmp_path / "p.png", max_size=128))
    one = Image.open(
        figures.panel(
            x, mean[..., :1], std[..., :1], target[..., :1], tmp_path / "q.png", max_size=128
        )
    )
    assert img.width == one.width == 5 * (128 + figures._PAD) + figures._PAD
    assert img.height > 1.9 * one.height - 20


def test_percentile_scaling_ignores_outliers_and_shares_range():
    x, mean, _, target = images((40, 40))
    mean[0, 0, 0] = target[0, 0, 0] = 1e9  # one hot pixel must not turn the rest black
    canvas = np.asarray(figures.render_panel(x, mean, None, target))
    title_h = 20
    pred_cell = canvas[
        title_h + 10 : title_h + 30, 40 + 2 * figures._PAD + 10 : 40 + 2 * figures._PAD + 30
    ]
    dark = figures.COLORMAPS["viridis"][0]
    assert np.abs(pred_cell.astype(int) - dark).sum(-1).mean() > 60


def test_colorize_maps_range_ends_and_clips():
    rgb = figures.colorize(np.array([[-5.0, 0.0, 10.0, 99.0]]), 0.0, 10.0, "magma")
    lut = figures.COLORMAPS["magma"]
    np.testing.assert_array_equal(rgb[0], [lut[0], lut[0], lut[255], lut[255]])
    assert figures.colorize(np.ones((2, 2)), 1.0, 1.0).shape == (2, 2, 3)  # constant image


def test_write_is_atomic(tmp_path, monkeypatch):
    x, mean, std, target = images()
    path = figures.panel(x, mean, std, target, tmp_path / "fig.png")
    before = path.read_bytes()

    def broken_save(self, fp, format=None, **kwargs):
        Path(fp).write_bytes(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        figures.panel(x, 2 * mean, std, target, path)
    assert path.read_bytes() == before  # the old figure survives intact
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]  # no temp file left


def test_mismatched_shapes_raise(tmp_path):
    x, mean, std, target = images()
    with pytest.raises(InputError, match="target shape"):
        figures.panel(x, mean, std, target[:10], tmp_path / "p.png")
    with pytest.raises(InputError, match="input size"):
        figures.panel(x[:10], mean, std, target, tmp_path / "p.png")
