"""A preset's bioimage.io package: its record, card, cover, citation and held-out test input.

The zoo knows the presets; `vsgan.inference.bioimageio` knows the package format. This joins
them: `export_bioimageio(model, path, **preset_package(name))`.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from vsgan.errors import DataFileError, InputError
from vsgan.inference.bioimageio import DATASET_CITATIONS, TEST_SIZE


def preset_package(preset: str, data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """`export_bioimageio` keyword arguments for a preset: its name, description, card,
    held-out figure as cover, dataset citation, and a test input cut from its held-out data.

    The test input is the first held-out field of the preset's dataset (at most
    512 x 512 from its first held-out region: the bottom-right quadrant for ``isl-nuclei``,
    a held-out cell for ``jurkat-dna``). Without the data, a synthetic field and a warning.

    Args:
        preset: a preset name (`vsgan.list_pretrained()`).
        data_dir: where the dataset lives (default ``$VSGAN_DATA``).
    """
    from vsgan.datasets import build
    from vsgan.zoo.presets import get_preset, weights_dir

    record = get_preset(preset)
    folder = weights_dir()
    kwargs: dict[str, Any] = {
        "name": f"vsgan {record.name}",
        "description": record.description,
        "tags": [record.dataset],
    }
    if record.card and (folder / record.card).is_file():
        kwargs["documentation"] = folder / record.card
    cover = folder / f"{record.name}_heldout.png"
    if cover.is_file():
        kwargs["covers"] = [cover]
    if record.dataset in DATASET_CITATIONS:
        kwargs["cite"] = [DATASET_CITATIONS[record.dataset]]
    try:
        spec = build(record.dataset, data_dir, **record.dataset_args)
        field = spec.fields_in("test")[0]
        x, _ = field.read()
        y0, y1, x0, x1 = field.rects("test", x.shape[:2])[0]
        config = record.config or {}
        m = 2 ** (config.get("n_downsample", 0) + config.get("n_local_enhancers", 0))
        h = min(y1 - y0, TEST_SIZE) // m * m
        w = min(x1 - x0, TEST_SIZE) // m * m
        kwargs["test_input"] = np.asarray(x[y0 : y0 + h, x0 : x0 + w], np.float32)
    except (DataFileError, InputError, IndexError) as error:
        warnings.warn(
            f"{preset}: no held-out data for the test tensors ({error}); using a synthetic field. "
            "Fix: set $VSGAN_DATA or pass --data.",
            stacklevel=2,
        )
    return kwargs
