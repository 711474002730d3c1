"""napari sample data: a label-free field to stain.

The held-out quadrant of isl-condition-b (13 phase-contrast planes, never trained on, with the
measured DAPI hidden for comparison) when the data folder is present (`$VSGAN_DATA`, the
Keras cache, or `shared/data` beside a source checkout); synthetic cells (phase, with the
measured nuclei and membrane stains hidden) otherwise. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vsgan.napari.layers import image_kwargs

LayerData = tuple[Any, dict[str, Any], str]


def _isl_folder() -> Path | None:
    from vsgan.datasets.sources import find_data
    from vsgan.errors import VsganError

    beside_checkout = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    for where in (None, beside_checkout):  # None: $VSGAN_DATA, then the Keras cache
        try:
            return find_data("isl-condition-b", where)
        except (VsganError, OSError):
            continue
    return None


def isl_heldout(folder: Path) -> list[LayerData]:
    """The held-out ISL quadrant: 13 phase planes (z06 shown) and the measured DAPI (hidden)."""
    from vsgan.datasets.real import ISL_PLANES, ISL_TEST_REGION
    from vsgan.io.readers import read_image

    y0, y1, x0, x1 = ISL_TEST_REGION
    layers = []
    names = [f"phase_contrast_z{p:02d}" for p in ISL_PLANES] + ["dapi_confocal_maxproj"]
    for name in names:
        plane = read_image(folder / f"{name}.png")[y0:y1, x0:x1, 0]
        kwargs = image_kwargs(name, plane, visible=name == "phase_contrast_z06")
        kwargs["translate"] = (y0, x0)  # where the quadrant lies in the full field
        layers.append((plane, kwargs, "image"))
    return layers


def synthetic_field(size: int = 256, seed: int = 0) -> list[LayerData]:
    """Synthetic cells: phase (shown) and their measured nuclei and membrane stains (hidden)."""
    from vsgan.datasets.synthetic import synthetic_field as make

    phase, nuclei, membrane = make(np.random.default_rng(seed), size)
    return [
        (phase, image_kwargs("phase", phase), "image"),
        (nuclei, image_kwargs("nuclei", nuclei, visible=False), "image"),
        (membrane, image_kwargs("membrane", membrane, visible=False), "image"),
    ]


def sample_field() -> list[LayerData]:
    """The sample napari shows under File > Open Sample > vsgan."""
    folder = _isl_folder()
    return isl_heldout(folder) if folder is not None else synthetic_field()
