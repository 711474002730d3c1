"""Export a trained generator for serving: a TensorFlow SavedModel or an ONNX graph.

Both need neither vsgan nor Keras to run and serve any batch size, height and width; padding to
the network's size multiple and cropping back happen inside the generator.

SavedModel (`export_generator`, `tf.saved_model.load(path)`), endpoints:

- `serve(x)`: float32 (B, H, W, C_in) in model units -> ``{"output": y}``, y in model units, like
  `model.generator.predict(x)`. A dict keyed by the output name, as bioimage.io's TensorFlow
  backend (a `keras.layers.TFSMLayer` on `serve`) requires.
- `serve_uint16(x)` / `serve_raw(x)`: uint16 or float32 raw intensities -> stains in
  target units (a tensor), through the model's preprocessor (`model.preprocessor`).

ONNX (`export_onnx`, `pip install "vsgan[onnx]"`): the graph of `serve`, input ``"input"``
float32 (batch, height, width, C_in) in model units, output ``"output"``.
"""

from __future__ import annotations

import importlib
import os

from vsgan.errors import MissingExtraError
from vsgan.io.files import atomic_path, refuse_existing

INPUT_NAME = "input"
OUTPUT_NAME = "output"
ONNX_OPSET = 17

_EXTRAS = {
    "onnx": ("tf2onnx", "onnx", "onnxruntime"),
    "bioimageio": ("bioimageio.spec", "bioimageio.core", "tf2onnx", "onnx", "onnxruntime"),
}


def require_extra(extra: str, what: str) -> None:
    """Raises `MissingExtraError` naming ``pip install "vsgan[<extra>]"`` if a module is missing.

    Args:
        extra: the setup.cfg extra (``"onnx"`` or ``"bioimageio"``).
        what: what needs it, for the message (e.g. ``"ONNX export"``).
    """
    missing = []
    for module in _EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise MissingExtraError(
            f"{what} needs {', '.join(missing)}, which is not installed. "
            f'Fix: pip install "vsgan[{extra}]"'
        )


def _serving_function(model):
    import tensorflow as tf

    generator = model.generator
    spec = [tf.TensorSpec([None, None, None, model.in_channels], tf.float32, name=INPUT_NAME)]

    @tf.function(input_signature=spec)
    def serve(x):
        return {OUTPUT_NAME: generator(x, training=False)}

    return serve, spec


def export_generator(model, path: str | os.PathLike, overwrite: bool = False) -> str:
    """Writes `model.generator` as a SavedModel at `path`, atomically.

    Args:
        model: a `vsgan.Pix2PixHD`.
        path: the SavedModel folder to create.
        overwrite: replace an existing folder at `path`.

    Returns:
        The path written.

    Example:
    >>> import tempfile, os
    >>> import tensorflow as tf
    >>> from vsgan import Pix2PixHD
    >>> model = Pix2PixHD(1, 1, ngf=8, n_downsample=2, n_blocks=1)
    >>> path = export_generator(model, os.path.join(tempfile.mkdtemp(), "served"))
    >>> served = tf.saved_model.load(path)
    >>> served.serve(tf.zeros((1, 30, 20, 1)))["output"].shape
    TensorShape([1, 30, 20, 1])
    """
    import keras
    import tensorflow as tf

    path = os.fspath(path)
    refuse_existing(path, overwrite)
    generator = model.generator
    preprocessor = model.preprocessor
    c = model.in_channels

    def stain_raw(x):
        y = generator(preprocessor.normalize_input_tf(x), training=False)
        return preprocessor.denormalize_target_tf(y)

    archive = keras.export.ExportArchive()
    archive.track(generator)
    archive.add_endpoint(
        "serve",
        lambda x: {OUTPUT_NAME: generator(x, training=False)},
        input_signature=[tf.TensorSpec([None, None, None, c], tf.float32, name=INPUT_NAME)],
    )
    archive.add_endpoint(
        "serve_uint16",
        stain_raw,
        input_signature=[tf.TensorSpec([None, None, None, c], tf.uint16, name="x")],
    )
    archive.add_endpoint(
        "serve_raw",
        stain_raw,
        input_signature=[tf.TensorSpec([None, None, None, c], tf.float32, name="x")],
    )
    with atomic_path(path, overwrite=overwrite, folder=True) as tmp:
        archive.write_out(str(tmp), verbose=False)
    return path


def onnx_model(model, opset: int = ONNX_OPSET):
    """The generator as an in-memory `onnx.ModelProto` (see `export_onnx`)."""
    require_extra("onnx", "ONNX export")
    import numpy as np
    import tf2onnx

    generator = model.generator
    if not generator.built or not generator.inputs:
        generator(np.zeros((1, 16, 16, model.in_channels), "float32"))  # export needs one call
    serve, spec = _serving_function(model)
    proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset)
    # Name the dynamic axes (tf2onnx writes unk__N).
    for value in (proto.graph.input[0], proto.graph.output[0]):
        for dim, name in zip(value.type.tensor_type.shape.dim, ("batch", "height", "width")):
            dim.dim_param = name
    proto.doc_string = (
        f"vsgan Pix2PixHD generator: {INPUT_NAME} float32 (batch, height, width, "
        f"{model.in_channels}) in model units -> {OUTPUT_NAME} (batch, height, width, "
        f"{model.out_channels}) in model units; any height and width."
    )
    return proto


def export_onnx(
    model, path: str | os.PathLike, overwrite: bool = False, opset: int = ONNX_OPSET
) -> str:
    """Writes `model.generator` as an ONNX file at `path`, atomically.

    The graph is the SavedModel's `serve`: input ``"input"`` float32 (batch, height, width,
    C_in) in model units, output ``"output"`` in model units; batch, height and width are
    dynamic, odd sizes included. Needs ``pip install "vsgan[onnx]"`` (tf2onnx, onnx,
    onnxruntime); without it, `MissingExtraError`.

    Args:
        model: a `vsgan.Pix2PixHD`.
        path: the `.onnx` file to create.
        overwrite: replace an existing file at `path`.
        opset: the ONNX opset.

    Returns:
        The path written.

    Example:
    >>> import tempfile, os
    >>> import numpy as np, onnxruntime
    >>> from vsgan import Pix2PixHD
    >>> model = Pix2PixHD(1, 1, ngf=8, n_downsample=2, n_blocks=1)
    >>> path = export_onnx(model, os.path.join(tempfile.mkdtemp(), "g.onnx"))
    >>> session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    >>> session.run(None, {"input": np.zeros((1, 13, 9, 1), "float32")})[0].shape
    (1, 13, 9, 1)
    """
    path = os.fspath(path)
    refuse_existing(path, overwrite)
    proto = onnx_model(model, opset)
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(proto.SerializeToString())
        readable_by_all(tmp)
    return path


def readable_by_all(path: str | os.PathLike) -> None:
    """Gives a file written through a temporary (mode 0600) the usual mode (0666 - umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
