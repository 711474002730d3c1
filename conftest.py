"""Set-up shared by the tests and the docstring examples (`pytest --doctest-modules vsgan`).

Docstring examples that read the real datasets run when the data is present ($VSGAN_DATA, or
../shared/data beside the checkout, as CI lays it out) and are skipped with a reason otherwise.
"""

import os
from pathlib import Path

import pytest

_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"
if "VSGAN_DATA" not in os.environ and _DATA.is_dir():
    os.environ["VSGAN_DATA"] = str(_DATA)

NEEDS_DATA = (
    "vsgan/datasets/real.py",
    "vsgan/datasets/sources.py",
    "vsgan/datasets/tfds_builders.py",
)


def pytest_collection_modifyitems(config, items):
    if os.environ.get("VSGAN_DATA") and Path(os.environ["VSGAN_DATA"]).is_dir():
        return
    skip = pytest.mark.skip(reason="real data not found: set VSGAN_DATA or put shared/data beside")
    for item in items:
        if item.nodeid.startswith(NEEDS_DATA):
            item.add_marker(skip)
