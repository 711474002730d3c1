"""vsgan: virtual staining of label-free microscopy with Pix2PixHD GANs in Keras 3."""

import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from vsgan.errors import VsganError  # noqa: E402
from vsgan.models import (  # noqa: E402
    GlobalGenerator,
    LocalEnhancer,
    MultiScaleDiscriminator,
    PatchDiscriminator,
    Pix2PixHD,
)

__version__ = "0.1.0"

__all__ = [
    "GlobalGenerator",
    "LocalEnhancer",
    "MultiScaleDiscriminator",
    "PatchDiscriminator",
    "Pix2PixHD",
    "VsganError",
]
