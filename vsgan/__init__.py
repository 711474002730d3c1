"""vsgan: virtual staining of label-free microscopy with Pix2PixHD GANs in Keras 3.

`import vsgan` is cheap: TensorFlow loads when a model, a pipeline or `stain` is first
touched (PEP 562 lazy attributes), so the command line answers `--help` at once.

Example:
>>> import vsgan
>>> "isl-nuclei" in vsgan.list_pretrained()
True
"""

import importlib as _importlib
import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from vsgan import _quiet  # noqa: E402
from vsgan.errors import VsganError  # noqa: E402

_quiet.install()

__version__ = "0.2.0"

# name -> module that defines it; imported on first access.
_LAZY = {
    "GlobalGenerator": "vsgan.models",
    "LocalEnhancer": "vsgan.models",
    "MultiScaleDiscriminator": "vsgan.models",
    "PatchDiscriminator": "vsgan.models",
    "Pix2PixHD": "vsgan.models",
    "Normalization": "vsgan.data.normalize",
    "StainPreprocessor": "vsgan.data.normalize",
    "PairedDataset": "vsgan.data.spec",
    "make_dataset": "vsgan.data.pipeline",
    "read_image": "vsgan.io.readers",
    "synthetic_cells": "vsgan.datasets.synthetic",
    "StainResult": "vsgan.inference.stain",
    "stain": "vsgan.inference.stain",
    "list_pretrained": "vsgan.zoo.presets",
    "load_pretrained": "vsgan.zoo.presets",
}
_SUBPACKAGES = ("data", "datasets", "evaluation", "inference", "io", "models", "training", "zoo")


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return _importlib.import_module(f"vsgan.{name}")
    raise AttributeError(f"module 'vsgan' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_LAZY, *_SUBPACKAGES})


__all__ = ["VsganError", *sorted(_LAZY), *_SUBPACKAGES]
