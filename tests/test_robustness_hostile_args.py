"""Only vsgan errors escape public entry points (issue 14, class 2): property-based tests
drive the public functions and the CLI commands with hostile arguments (NaN, inf, 2**70,
negative and zero counts, wrong types); each call either works or raises a `VsganError`
(the CLI: exit 0, or one line and exit 2)."""

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vsgan
from conftest import TINY
from vsgan import cli
from vsgan.errors import VsganError
from vsgan.inference.stain import sample, stain, tile_grid
from vsgan.io.readers import read_image

SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
FIXTURES = Path(__file__).parent / "fixtures"

# Invalid counts and sizes of every kind (valid small ones are drawn too, by `small`).
BAD_NUMBER = st.one_of(
    st.sampled_from([0, -1, -(2**70), 2**70, 2**31, 10**12]),
    st.sampled_from([math.nan, math.inf, -math.inf, 2.5, -0.0, 1e300]),
    st.sampled_from([None, True, False, "3", "", b"4", [1], {}, object()]),
)
small = st.integers(1, 3)
anything = st.one_of(BAD_NUMBER, small)


@pytest.fixture(scope="module")
def model():
    return vsgan.Pix2PixHD(1, 1, dropout=0.5, **TINY)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "tiny.keras"
    vsgan.Pix2PixHD(1, 1, dropout=0.5, **TINY).save(path)
    return path


def _only_vsgan_errors(call):
    try:
        return call()
    except VsganError:
        return None


@settings(max_examples=60, **SETTINGS)
@given(samples=anything, tile_size=st.one_of(anything, st.just(8)), overlap=anything,
       batch_size=anything, tta=st.booleans())  # fmt: skip
def test_stain_with_hostile_arguments(model, samples, tile_size, overlap, batch_size, tta):
    image = np.random.default_rng(0).random((12, 20)).astype(np.float32)
    result = _only_vsgan_errors(
        lambda: stain(
            model,
            image,
            samples=samples,
            tile_size=tile_size,
            overlap=overlap,
            batch_size=batch_size,
            tta=tta,
        )  # fmt: skip
    )
    if result is not None:
        assert result.mean.shape == (12, 20, 1) and np.isfinite(result.mean).all()


@settings(max_examples=40, **SETTINGS)
@given(n=anything, batch_size=anything)
def test_sample_with_hostile_arguments(model, n, batch_size):
    out = _only_vsgan_errors(lambda: sample(model, np.zeros((8, 8, 1)), n, batch_size))
    if out is not None:
        assert out.shape == (n, 1, 8, 8, 1)


@settings(max_examples=80, **SETTINGS)
@given(h=anything, w=anything, tile=anything, overlap=anything, multiple=anything)
def test_tile_grid_with_hostile_arguments(h, w, tile, overlap, multiple):
    grid = _only_vsgan_errors(lambda: tile_grid(h, w, tile, overlap, multiple))
    if grid is not None:
        assert grid.padded_shape[0] >= h and grid.padded_shape[1] >= w


@settings(max_examples=80, **SETTINGS)
@given(channels=st.one_of(anything, st.lists(anything, max_size=3), st.text(max_size=4)),
       index=anything)  # fmt: skip
def test_read_image_with_hostile_arguments(channels, index):
    stack = np.arange(2 * 4 * 5 * 3, dtype=np.uint16).reshape(2, 4, 5, 3)
    out = _only_vsgan_errors(lambda: read_image(stack, channels, index=index))
    if out is not None:
        assert out.ndim == 3


ARCHITECTURE = ["ngf", "n_downsample", "n_blocks", "n_local_enhancers", "n_blocks_local",
                "ndf", "num_d", "n_layers_d", "dropout", "lambda_gan", "in_channels",
                "out_channels", "gan_loss", "input_channels", "normalization"]  # fmt: skip


@settings(max_examples=60, **SETTINGS)
@given(key=st.sampled_from(ARCHITECTURE), value=BAD_NUMBER)
def test_model_with_a_hostile_setting(key, value):
    if key == "dropout" and value in (0, -0.0, False):
        value = 1  # 0 is a valid dropout; 1 is not
    _only_vsgan_errors(lambda: vsgan.Pix2PixHD(**{**TINY, key: value}))


# ------------------------------------------------------------------------------- CLI
INT_TEXT = st.sampled_from(["0", "-1", "nan", "inf", "1e9", "", "2", str(2**70), "-99999999999"])


def _cli(argv) -> int:
    try:
        return cli.main([str(a) for a in argv])
    except SystemExit as stop:  # argparse: a value that is not a number
        return stop.code


@settings(max_examples=12, **SETTINGS)
@given(samples=INT_TEXT, tile=INT_TEXT, overlap=INT_TEXT)
def test_cli_predict_with_hostile_numbers(model_file, samples, tile, overlap):
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "img.npy"
        np.save(image, np.ones((12, 12), np.float32))
        argv = ["predict", model_file, image, "-o", Path(tmp) / "out", "--samples", samples,
                "--tile-size", tile, "--overlap", overlap, "--quiet"]  # fmt: skip
        assert _cli(argv) in (0, 2)


@settings(max_examples=12, **SETTINGS)
@given(flag=st.sampled_from(["--ngf", "--n-downsample", "--n-blocks", "--in-channels",
                             "--out-channels", "--dropout"]), value=INT_TEXT)  # fmt: skip
def test_cli_convert_with_hostile_numbers(flag, value):
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["convert", FIXTURES / "global_basic.pth", Path(tmp) / "g.keras", flag, value]
        assert _cli(argv) in (0, 2)


@settings(max_examples=10, **SETTINGS)
@given(flag=st.sampled_from(["--epochs", "--batch-size", "--patch-size", "--seed",
                             "--steps-per-epoch"]),
       value=st.sampled_from(["0", "-1", "nan", "", "-99999999999", "99999999999"]))  # fmt: skip
def test_cli_train_with_hostile_numbers(flag, value):
    if flag in ("--epochs", "--steps-per-epoch", "--seed") and value == "99999999999":
        value = "-5"  # a valid huge count would train for ever
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["train", "--preset", "isl-nuclei", "--out", Path(tmp) / "run", flag, value,
                "--data", Path(tmp) / "missing"]  # fmt: skip
        assert _cli(argv) == 2
