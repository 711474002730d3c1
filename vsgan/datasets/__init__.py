"""Datasets: synthetic cells, the real datasets as `PairedDataset` specs, and TFDS builders.

The TFDS builders (`IslConditionB`, `MlcpJurkat`, `A549Vscyto2d`) live in
`vsgan.datasets.tfds_builders` and load tensorflow-datasets only when first used.
"""

from vsgan.datasets.real import (
    ISL_TEST_REGION,
    a549_vscyto2d,
    isl_condition_b,
    mlcp_jurkat,
)
from vsgan.datasets.sources import DATASETS, fetch, find_data, verify
from vsgan.datasets.synthetic import synthetic_cells, synthetic_field

_BUILDERS = ("A549Vscyto2d", "IslConditionB", "MlcpJurkat")


def __getattr__(name):
    if name in _BUILDERS:  # importing tensorflow_datasets is slow: only on demand
        from vsgan.datasets import tfds_builders

        return getattr(tfds_builders, name)
    raise AttributeError(f"module 'vsgan.datasets' has no attribute {name!r}")


__all__ = [
    "DATASETS",
    "ISL_TEST_REGION",
    "a549_vscyto2d",
    "fetch",
    "find_data",
    "isl_condition_b",
    "mlcp_jurkat",
    "synthetic_cells",
    "synthetic_field",
    "verify",
    *_BUILDERS,
]
