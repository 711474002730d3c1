"""The napari plugin: manifest, "Virtual stain" widget, OME-TIFF reader, sample data; and
napari-ome-zarr on vsgan's OME-Zarr output. Uses napari's `make_napari_viewer` and pytest-qt;
needs a display with OpenGL (CI runs the suite under xvfb-run, see .ci/run)."""

import os
import sys
import time

import numpy as np
import pytest

from conftest import REPO, TINY

# Mesa's llvmpipe JIT calls LLVM, and those calls can bind to TensorFlow's own LLVM copy
# (a crash while rendering); softpipe without LLVM draws the same pictures. Set before the
# first OpenGL context exists.
os.environ.setdefault("GALLIUM_DRIVER", "softpipe")
os.environ.setdefault("DRAW_USE_LLVM", "0")

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")
if sys.platform.startswith("linux") and not (
    os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
):
    pytest.skip(
        "napari needs a display with OpenGL: run under xvfb-run (as .ci/run does)",
        allow_module_level=True,
    )

import tifffile  # noqa: E402

import vsgan  # noqa: E402
from vsgan.inference.stain import stain  # noqa: E402
from vsgan.napari.reader import napari_get_reader  # noqa: E402
from vsgan.napari.sample import sample_field, synthetic_field  # noqa: E402
from vsgan.napari.widget import KERAS_FILE, StainWidget, match_layers  # noqa: E402

MANIFEST = REPO / "vsgan" / "napari" / "napari.yaml"


@pytest.fixture
def plugin():
    """The vsgan manifest registered with npe2 (as its `napari.manifest` entry point does)."""
    from npe2 import PluginManager, PluginManifest

    manager = PluginManager.instance()
    manifest = PluginManifest.from_file(MANIFEST)
    if manifest.name not in {m.name for m in manager.iter_manifests()}:
        manager.register(manifest)
    return manager.get_manifest("vsgan")


@pytest.fixture
def tiny_model_file(tmp_path):
    model = vsgan.Pix2PixHD(
        1, 2, input_channels=["phase"], output_channels=["nuclei", "membrane"], **TINY
    )
    path = tmp_path / "tiny.keras"
    model.save(path)
    return path


def test_manifest_declares_widget_reader_and_sample(plugin):
    contributions = plugin.contributions
    assert [w.display_name for w in contributions.widgets] == ["Virtual stain"]
    assert contributions.readers[0].filename_patterns == ["*.ome.tif", "*.ome.tiff"]
    assert [s.key for s in contributions.sample_data] == ["field"]
    for command in contributions.commands:  # every python_name resolves
        assert callable(command.exec) and command.python_name.startswith("vsgan.napari.")
    setup = (REPO / "setup.cfg").read_text()
    assert "napari.manifest =\n    vsgan = vsgan.napari:napari.yaml" in setup
    assert "vsgan.napari = napari.yaml" in setup  # shipped as package data


def test_match_layers_by_name():
    layers = ["Phase_Contrast_Z01", "phase_contrast_z00", "dapi", "phase_contrast_z02 [1]"]
    channels = ["phase_contrast_z00", "phase_contrast_z01", "phase_contrast_z02", "brightfield"]
    assert match_layers(channels, layers) == {
        "phase_contrast_z00": "phase_contrast_z00",
        "phase_contrast_z01": "Phase_Contrast_Z01",
        "phase_contrast_z02": "phase_contrast_z02 [1]",
        "brightfield": None,
    }
    assert match_layers(["phase"], ["my image"]) == {"phase": "my image"}  # the only one


def test_widget_stains_in_a_worker_and_adds_scaled_layers(
    make_napari_viewer, qtbot, plugin, tiny_model_file
):
    viewer = make_napari_viewer()
    (phase, kwargs, _), *_ = synthetic_field(size=96)
    phase = phase[:, :80]
    viewer.add_image(phase, name="phase", scale=(0.5, 0.5), translate=(10.0, 20.0))
    viewer.add_image(np.zeros((8, 8), np.float32), name="unrelated")
    _, widget = viewer.window.add_plugin_dock_widget("vsgan", "Virtual stain")
    assert isinstance(widget, StainWidget)
    widget.model.value = KERAS_FILE
    widget.model_file.value = tiny_model_file
    assert widget.mapping == {"phase": "phase"}  # pre-filled by name
    widget.samples.value, widget.tta.value, widget.tile_size.value = 1, True, 64

    start = time.perf_counter()
    widget.run()
    returned = time.perf_counter() - start
    assert not widget.button.enabled and "nuclei_prediction" not in viewer.layers
    assert returned < 2.0  # the viewer is not blocked while the model loads and stains
    with qtbot.waitSignal(widget.worker.finished, timeout=300_000):
        pass
    qtbot.waitUntil(lambda: "membrane_std" in viewer.layers, timeout=10_000)

    expected = stain(vsgan.load_pretrained(tiny_model_file), phase, tta=True, tile_size=64)
    assert expected.tiles == 4 and widget.progress.value == widget.progress.max == 4
    for i, target in enumerate(["nuclei", "membrane"]):
        pred, std = viewer.layers[f"{target}_prediction"], viewer.layers[f"{target}_std"]
        np.testing.assert_allclose(pred.data, expected.mean[..., i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(std.data, expected.std[..., i], rtol=1e-5, atol=1e-6)
        for layer in (pred, std):
            assert tuple(layer.scale) == (0.5, 0.5) and tuple(layer.translate) == (10.0, 20.0)
        lo, hi = pred.contrast_limits
        assert pred.data.min() <= lo < hi <= pred.data.max() and pred.visible
        assert std.colormap.name == "inferno" and not std.visible
    assert viewer.layers["nuclei_prediction"].colormap.name == "cyan"
    assert viewer.layers["membrane_prediction"].colormap.name == "magenta"
    assert "stained (4 tile(s))" in widget.status.value
    # Outputs are not offered as inputs; a second run replaces their data, adds no layers.
    assert widget.channels[0].choices == ("-", "phase", "unrelated")
    n_layers = len(viewer.layers)
    widget.run()
    with qtbot.waitSignal(widget.worker.finished, timeout=300_000):
        pass
    assert len(viewer.layers) == n_layers


def test_widget_explains_unmapped_channels(make_napari_viewer, plugin):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((16, 16), np.float32), name="brightfield")
    viewer.add_image(np.zeros((16, 16), np.float32), name="other")
    widget = StainWidget(viewer)
    widget.model.value = "isl-nuclei"  # 13 phase-contrast planes, none present
    assert len(widget.channels) == 13
    assert "no layer named like phase_contrast_z00" in widget.status.value
    widget.run()
    assert widget.worker is None
    assert "no image layer chosen for input channel(s) phase_contrast_z00" in widget.status.value


def test_reader_opens_ome_tiff_with_channel_names_and_scale(make_napari_viewer, plugin, tmp_path):
    data = np.random.default_rng(0).random((2, 24, 32)).astype(np.float32)
    path = tmp_path / "field_prediction.ome.tif"
    tifffile.imwrite(
        path,
        data,
        ome=True,
        photometric="minisblack",
        metadata={
            "axes": "CYX",
            "Channel": {"Name": ["nuclei_prediction", "nuclei_std"]},
            "PhysicalSizeX": 0.65,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeY": 0.65,
            "PhysicalSizeYUnit": "µm",
        },
    )
    assert napari_get_reader(str(tmp_path / "plain.tif")) is None
    viewer = make_napari_viewer()
    layers = viewer.open(path, plugin="vsgan")
    assert [layer.name for layer in layers] == ["nuclei_prediction", "nuclei_std"]
    for layer, plane in zip(layers, data):
        np.testing.assert_array_equal(layer.data, plane)
        assert tuple(layer.scale) == (0.65, 0.65)
        assert str(layer.units[0]) == "micrometer"
    assert layers[0].colormap.name == "cyan" and layers[1].colormap.name == "inferno"


def test_napari_ome_zarr_reads_vsgan_ome_zarr(make_napari_viewer, tmp_path):
    pytest.importorskip("napari_ome_zarr")
    metadata = pytest.importorskip(
        "vsgan.io.metadata", reason="needs issue 12's OME-Zarr writer (pixel size, transforms)"
    )
    from vsgan.inference.stain import StainResult
    from vsgan.io.writers import write_stain

    rng = np.random.default_rng(0)
    mean, std = rng.random((24, 32, 1), np.float32), rng.random((24, 32, 1), np.float32)
    result = StainResult(mean=mean, std=std, samples=4)
    (path,) = write_stain(
        tmp_path / "field", result, ["nuclei"], "zarr", pixel_size=metadata.PixelSize(0.65, 0.65)
    )
    viewer = make_napari_viewer()
    layers = viewer.open(path, plugin="napari-ome-zarr")
    # napari-ome-zarr names each channel layer "<image>: <omero label>".
    assert [layer.name for layer in layers] == ["field: nuclei_prediction", "field: nuclei_std"]
    for layer, plane in zip(layers, (mean, std)):
        np.testing.assert_allclose(np.squeeze(np.asarray(layer.data)), plane[..., 0])
        assert tuple(layer.scale[-2:]) == (0.65, 0.65)


def test_reader_opens_vsgan_ome_tiff_stain(make_napari_viewer, plugin, tmp_path):
    metadata = pytest.importorskip(
        "vsgan.io.metadata", reason="needs issue 12's OME-TIFF writer (names, pixel size)"
    )
    from vsgan.inference.stain import StainResult
    from vsgan.io.writers import write_stain

    rng = np.random.default_rng(1)
    mean, std = rng.random((24, 32, 2), np.float32), rng.random((24, 32, 2), np.float32)
    result = StainResult(mean=mean, std=std, samples=4)
    size = metadata.PixelSize(0.325, 0.325)
    (path,) = write_stain(tmp_path / "field", result, ["nuclei", "membrane"], pixel_size=size)
    viewer = make_napari_viewer()
    layers = viewer.open(path, plugin="vsgan")
    names = ["nuclei_prediction", "membrane_prediction", "nuclei_std", "membrane_std"]
    assert [layer.name for layer in layers] == names
    planes = [mean[..., 0], mean[..., 1], std[..., 0], std[..., 1]]
    for layer, plane in zip(layers, planes):
        np.testing.assert_array_equal(layer.data, plane)
        assert tuple(layer.scale) == (0.325, 0.325)


def test_sample_data_is_the_held_out_isl_quadrant(data_dir, make_napari_viewer, plugin):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("vsgan", "field")
    names = [layer.name for layer in layers]
    assert names == [f"phase_contrast_z{p:02d}" for p in range(13)] + ["dapi_confocal_maxproj"]
    assert all(layer.data.shape == (512, 512) for layer in layers)
    assert tuple(layers[0].translate) == (512.0, 512.0)  # where the quadrant lies
    assert [layer.visible for layer in layers].count(True) == 1
    # The isl-nuclei preset's inputs are found by name.
    widget = StainWidget(viewer)
    widget.model.value = "isl-nuclei"
    assert widget.mapping == {n: n for n in names[:13]}


def test_synthetic_sample_without_data(monkeypatch):
    monkeypatch.setattr("vsgan.napari.sample._isl_folder", lambda: None)
    layers = sample_field()
    assert [kw["name"] for _, kw, _ in layers] == ["phase", "nuclei", "membrane"]
    assert [kw.get("visible", True) for _, kw, _ in layers] == [True, False, False]
    assert layers[0][0].shape == (256, 256)


def test_widget_stains_in_a_child_process_beside_mesa_llvm(
    make_napari_viewer, qtbot, plugin, tiny_model_file, monkeypatch
):
    # Where Mesa's libLLVM is loaded before TensorFlow (a napari session on software or AMD
    # OpenGL), importing TensorFlow would crash: the widget stains in a spawned process.
    monkeypatch.setenv("VSGAN_NAPARI_PROCESS", "1")
    viewer = make_napari_viewer()
    phase = synthetic_field(size=64)[0][0]
    viewer.add_image(phase, name="phase")
    widget = StainWidget(viewer)
    widget.model.value = KERAS_FILE
    widget.model_file.value = tiny_model_file
    widget.samples.value = 1
    widget.run()
    with qtbot.waitSignal(widget.worker.finished, timeout=300_000):
        pass
    qtbot.waitUntil(lambda: "membrane_prediction" in viewer.layers, timeout=10_000)
    expected = stain(vsgan.load_pretrained(tiny_model_file), phase).mean
    np.testing.assert_allclose(
        viewer.layers["membrane_prediction"].data, expected[..., 1], rtol=1e-5, atol=1e-6
    )
    assert "nuclei_std" not in viewer.layers  # one deterministic pass: no spread
    assert widget.progress.value == widget.progress.max == 1
