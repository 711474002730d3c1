"""Datasets: the registry of real datasets (files, sha256, spec builder), synthetic cells, and
TFDS builders (`IslConditionB`, `MlcpJurkat`, `A549Vscyto2d`; tensorflow-datasets loads only
when one is used)."""

from vsgan import _lazy

__getattr__, __dir__ = _lazy.attributes(
    __name__,
    {
        "ISL_TEST_REGION": ".real",
        "a549_vscyto2d": ".real",
        "isl_condition_b": ".real",
        "mlcp_jurkat": ".real",
        "build": ".real",
        "DATASETS": ".sources",
        "fetch": ".sources",
        "find_data": ".sources",
        "verify": ".sources",
        "synthetic_cells": ".synthetic",
        "synthetic_field": ".synthetic",
        "A549Vscyto2d": ".tfds_builders",
        "IslConditionB": ".tfds_builders",
        "MlcpJurkat": ".tfds_builders",
    },
)
