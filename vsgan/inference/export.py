"""Export a trained generator as a TensorFlow SavedModel that serves any image size.

The SavedModel needs neither vsgan nor Keras to run: `tf.saved_model.load(path)` and call
an endpoint. Endpoints:

- `serve(x)`: float32 (B, H, W, C_in) in model units -> model units, like
  `model.generator.predict(x)`.
- `serve_uint16(x)` / `serve_raw(x)`: uint16 or float32 raw intensities -> stains in
  target units, through the model's preprocessor (`model.preprocessor`).

Padding to the network's size multiple and cropping back happen inside the generator.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from vsgan.io.files import atomic_path, refuse_existing


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
    >>> from vsgan import Pix2PixHD
    >>> model = Pix2PixHD(1, 1, ngf=8, n_downsample=2, n_blocks=1)
    >>> path = export_generator(model, os.path.join(tempfile.mkdtemp(), "served"))
    >>> served = tf.saved_model.load(path)
    >>> served.serve(tf.zeros((1, 30, 20, 1))).shape
    TensorShape([1, 30, 20, 1])
    """
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
        lambda x: generator(x, training=False),
        input_signature=[tf.TensorSpec([None, None, None, c], tf.float32, name="x")],
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
