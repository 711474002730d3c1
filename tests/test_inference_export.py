"""SavedModel export: any size, uint16 input, loads without vsgan in a fresh process."""

import subprocess
import sys
import textwrap

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
        np.save({str(tmp_path / "serve.npy")!r}, served.serve(x).numpy())
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
