"""Export: SavedModel (any size, uint16 input, loads without vsgan in a fresh process) and ONNX
(checked with onnxruntime against Keras at even, odd and tiny sizes)."""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import vsgan
from conftest import TINY
from vsgan.data.normalize import Normalization
from vsgan.errors import VsganError
from vsgan.inference.export import export_generator


def test_exported_generator_matches_keras_on_any_size_without_vsgan(tmp_path):
    model = vsgan.Pix2PixHD(
        1,
        2,
        dropout=0.2,
        normalization={
            "input": Normalization("meanstd", offset=[100.0], scale=[20.0]).get_config(),
            "target": Normalization.fixed([4400.0, 18372.0]).get_config(),
        },
        **TINY,
    )
    path = export_generator(model, tmp_path / "served")
    rng = np.random.default_rng(0)
    raw = rng.integers(50, 150, size=(2, 30, 45, 1)).astype("uint16")
    x = ((raw - 100.0) / 20.0).astype("float32")
    np.save(tmp_path / "raw.npy", raw)
    np.save(tmp_path / "x.npy", x)
    expected = model.generator.predict(x, verbose=0)
    code = textwrap.dedent(
        f"""
        import sys, numpy as np, tensorflow as tf
        served = tf.saved_model.load({str(path)!r})
        x = np.load({str(tmp_path / "x.npy")!r}); raw = np.load({str(tmp_path / "raw.npy")!r})
        out = served.serve(x)
        assert isinstance(out, dict) and list(out) == ["output"], out
        np.save({str(tmp_path / "serve.npy")!r}, out["output"].numpy())
        np.save({str(tmp_path / "u16.npy")!r}, served.serve_uint16(raw).numpy())
        assert "vsgan" not in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    np.testing.assert_allclose(np.load(tmp_path / "serve.npy"), expected, atol=1e-5)
    stains = np.load(tmp_path / "u16.npy")
    assert stains.shape == (2, 30, 45, 2)
    np.testing.assert_allclose(
        stains, (expected + 1) / 2 * np.array([4400.0, 18372.0]), rtol=1e-4, atol=0.05
    )


def test_export_refuses_to_overwrite(tmp_path):
    model = vsgan.Pix2PixHD(1, 1, **TINY)
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "keep.txt").write_text("user data")
    with pytest.raises(VsganError, match="overwrite=True"):
        export_generator(model, tmp_path / "served")
    assert (tmp_path / "served" / "keep.txt").read_text() == "user data"


# ------------------------------------------------------------------------------------------ ONNX
@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory):
    """A tiny 2 -> 1 model saved as .keras and exported by the CLI as a user would (once)."""
    folder = tmp_path_factory.mktemp("onnx")
    model = vsgan.Pix2PixHD(2, 1, dropout=0.2, **TINY)
    model.save(folder / "tiny.keras")
    run = subprocess.run(
        [sys.executable, "-m", "vsgan.cli", "export", "tiny.keras", "tiny.onnx"],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    assert "exported: tiny.onnx" in run.stdout
    return keras.models.load_model(folder / "tiny.keras"), folder / "tiny.onnx"


@pytest.mark.parametrize("shape", [(1, 512, 512), (2, 301, 517), (3, 13, 9)])
def test_onnx_matches_keras_on_even_odd_and_tiny_sizes(onnx_export, shape):
    import onnxruntime

    model, path = onnx_export
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(sum(shape)).normal(size=(*shape, 2)).astype("float32")
    (y,) = session.run(None, {"input": x})
    expected = model.generator.predict(x, verbose=0)
    assert y.shape == (*shape, 1)  # odd sizes come back whole (not 296 x 512 for 301 x 517)
    assert np.abs(y - expected).max() <= 1e-4


def test_onnx_graph_has_named_dynamic_axes_and_one_output(onnx_export):
    import onnx

    graph = onnx.load(str(onnx_export[1])).graph
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert [i.name for i in graph.input] == ["input"]
    assert [o.name for o in graph.output] == ["output"]
    assert dims(graph.input[0]) == ["batch", "height", "width", 2]
    assert dims(graph.output[0]) == ["batch", "height", "width", 1]


def test_onnx_export_refuses_to_overwrite(onnx_export):
    from vsgan.inference.export import export_onnx

    model, path = onnx_export
    before = path.read_bytes()
    with pytest.raises(VsganError, match="overwrite=True"):
        export_onnx(model, path)
    assert path.read_bytes() == before


def test_padding_keeps_its_sizes_with_the_onnx_safe_formula():
    """(m - n % m) % m pads exactly as (-n) % m did, at least two multiples."""
    from vsgan.models.layers import PadToMultiple

    for m in (1, 4, 8):
        layer = PadToMultiple(m)
        for n in (1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33):
            x = np.arange(n * 3, dtype="float32").reshape(1, n, 3, 1)
            y = keras.ops.convert_to_numpy(layer(x))
            assert y.shape[1] == max(n + (-n) % m, 2 * m), (m, n)
            np.testing.assert_array_equal(y[:, :n, :3], x)  # the image itself is untouched


@pytest.mark.parametrize(
    ("missing", "args", "extra"),
    [
        ("tf2onnx", ["export", "isl-nuclei", "out.onnx", "--format", "onnx"], "onnx"),
        ("onnxruntime", ["export", "isl-nuclei", "out.onnx"], "onnx"),
        ("bioimageio.core", ["export", "isl-nuclei", "pkg.zip"], "bioimageio"),
        ("bioimageio.spec", ["export", "m.keras", "p.zip", "--format", "bioimageio"], "bioimageio"),
    ],
)
def test_a_missing_extra_is_one_line_naming_the_pip_install(tmp_path, missing, args, extra):
    code = (
        f"import sys; sys.modules[{missing!r}] = None\n"  # import of it raises ImportError
        "from vsgan.cli import main\n"
        f"sys.exit(main({args!r}))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert f'pip install "vsgan[{extra}]"' in lines[0] and missing in lines[0]
    assert not any(tmp_path.iterdir())


def test_missing_extra_error_is_a_vsgan_import_error(monkeypatch):
    from vsgan.errors import MissingExtraError
    from vsgan.inference.export import export_onnx

    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    with pytest.raises(MissingExtraError, match=r'pip install "vsgan\[onnx\]"') as error:
        export_onnx(vsgan.Pix2PixHD(1, 1, **TINY), "never.onnx")
    assert isinstance(error.value, ImportError) and isinstance(error.value, VsganError)
