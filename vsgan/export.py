"""Export a trained generator as a TensorFlow SavedModel that serves any image size.

The SavedModel needs neither vsgan nor Keras to run: `tf.saved_model.load(path)` and call
an endpoint. Endpoints:

- `serve(x)`: float32 (B, H, W, C_in) in model units -> model units, like
  `model.generator.predict(x)`.
- `serve_uint16(x)` / `serve_raw(x)`: uint16 or float32 raw intensities -> stains in
  target units, through the normalisation stored in the model (see
  `Pix2PixHD.normalizers`).

Padding to the network's size multiple and cropping back happen inside the generator.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import keras
import tensorflow as tf

from vsgan.errors import VsganError


def export_generator(model, path: str | os.PathLike, overwrite: bool = False) -> str:
    """Writes `model.generator` as a SavedModel at `path`, atomically.

    Args:
        model: a `vsgan.Pix2PixHD`.
        path: the SavedModel folder to create.
        overwrite: replace an existing folder at `path`.

    Returns:
        The path written.

    Example:
    >>> model.export_generator("served/")
    >>> served = tf.saved_model.load("served/")
    >>> y = served.serve(tf.zeros((1, 300, 200, 1)))
    """
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise VsganError(f"{path} exists: choose another path or pass overwrite=True.")
    generator = model.generator
    in_norm, out_norm = model.normalizers()
    c = model.in_channels

    def stain_raw(x):
        y = generator(in_norm.normalize_tf(x), training=False)
        return out_norm.denormalize_tf(y)

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
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    old = None
    try:
        archive.write_out(tmp, verbose=False)
        if os.path.exists(path):  # moved aside, not deleted, until the new one is in place
            old = tempfile.mkdtemp(prefix=".export-old-", dir=parent)
            os.replace(path, os.path.join(old, "previous"))
        os.replace(tmp, path)
    except BaseException:
        if old is not None and not os.path.exists(path):
            os.replace(os.path.join(old, "previous"), path)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return path
