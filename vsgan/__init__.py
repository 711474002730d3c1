"""vsgan: virtual staining of label-free microscopy with Pix2PixHD GANs in Keras 3.

Example:
>>> import vsgan
>>> model = vsgan.load_pretrained("isl-nuclei")
>>> result = vsgan.stain(model, phase_stack, samples=8)   # .mean and .std in target units
"""

import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from vsgan._quiet import native_stderr_silenced  # noqa: E402

with native_stderr_silenced():
    import tensorflow  # noqa: F401

from vsgan import (  # noqa: E402
    data,
    datasets,
    metrics,  # noqa: E402
)
from vsgan.data import Normalization, PairedDataset, make_dataset, read_image  # noqa: E402
from vsgan.datasets import synthetic_cells  # noqa: E402
from vsgan.errors import VsganError  # noqa: E402
from vsgan.inference import StainResult, stain  # noqa: E402
from vsgan.models import (  # noqa: E402
    GlobalGenerator,
    LocalEnhancer,
    MultiScaleDiscriminator,
    PatchDiscriminator,
    Pix2PixHD,
)
from vsgan.zoo import list_pretrained, load_pretrained  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "GlobalGenerator",
    "LocalEnhancer",
    "MultiScaleDiscriminator",
    "Normalization",
    "PairedDataset",
    "PatchDiscriminator",
    "Pix2PixHD",
    "StainResult",
    "VsganError",
    "data",
    "datasets",
    "list_pretrained",
    "load_pretrained",
    "make_dataset",
    "metrics",
    "read_image",
    "stain",
    "synthetic_cells",
]
