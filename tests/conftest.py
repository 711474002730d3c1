"""Shared test set-up: two logical CPUs (for MirroredStrategy), seeds, data location."""

import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Must happen before TensorFlow initialises its devices, so here, at collection time.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import keras  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """`$VSGAN_DATA`, else `../shared/data` beside the repository (as CI lays it out)."""
    for candidate in (os.environ.get("VSGAN_DATA"), REPO.parent / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@pytest.fixture
def data_dir() -> Path:
    found = shared_data_dir()
    if found is None:
        pytest.skip("real data not found: set VSGAN_DATA or put shared/data beside the repo")
    return found


@pytest.fixture(autouse=True)
def _seed_and_policy():
    keras.utils.set_random_seed(0)
    yield
    keras.mixed_precision.set_global_policy("float32")


TINY = dict(ngf=8, n_downsample=2, n_blocks=1, ndf=8, num_d=2, n_layers_d=3)


def _mesa_llvm_loaded() -> bool:
    try:
        with open("/proc/self/maps") as maps:
            return "libLLVM" in maps.read()
    except OSError:
        return False


def pytest_sessionfinish(session, exitstatus):
    session.config._vsgan_exitstatus = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    # Mesa's software OpenGL (the napari tests under xvfb) brings its own libLLVM, whose static
    # destructors run on TensorFlow's copy of the same LLVM globals at exit: a double free
    # ("free(): invalid pointer", exit 134) after every test passed. Once pytest has reported,
    # leave with its status without running those C++ exit handlers.
    status = getattr(config, "_vsgan_exitstatus", None)
    if status is not None and _mesa_llvm_loaded():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
