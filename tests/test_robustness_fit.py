"""Training on careless data (issue 14, class 5): NaN batches, empty and unbatched data, a
replica with no image. `Pix2PixHD.fit` itself refuses or stops; plain Keras would train on."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY
from vsgan import Pix2PixHD
from vsgan.errors import InputError, TrainingDiverged
from vsgan.models.layers import PadToMultiple, ReflectionPadding2D


def _model():
    model = Pix2PixHD(1, 1, **TINY)
    model.compile(niter=1, niter_decay=0)
    return model


def _pairs(n=4, size=16):
    rng = np.random.default_rng(0)
    return rng.random((n, size, size, 1), np.float32), rng.random((n, size, size, 1), np.float32)


def _weights(model):
    return [w.copy() for w in model.get_weights()]


def test_nan_batch_in_plain_fit_stops_and_changes_no_weight():
    model = _model()
    x, y = _pairs(4)
    model.fit(x[:2], y[:2], batch_size=2, epochs=1, verbose=0)  # built, one good step
    before = _weights(model)
    x[2:] = np.nan
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 2.*changed no weight"):
        model.fit(x, y, batch_size=2, epochs=2, verbose=0, shuffle=False)
    after = model.get_weights()
    assert all(np.isfinite(w).all() for w in after)
    # The good first batch of this fit was applied, the NaN one was not: finite, and moved.
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))


def test_nan_batch_changes_no_weight_in_train_step():
    model = _model()
    x, y = _pairs(2)
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    before = _weights(model)
    logs = model.train_step((tf.constant(np.full_like(x, np.nan)), tf.constant(y)))
    assert not np.isfinite(float(logs["g_loss"]))
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def _never(a, b):
    return False


_slices = tf.data.Dataset.from_tensor_slices

CARELESS = [
    ("empty-dataset", lambda: _slices(_pairs(0)).batch(2), "empty dataset"),
    ("unbatched-dataset", lambda: _slices(_pairs(4)), "batch it"),
    ("fewer-than-one-batch", lambda: _slices(_pairs(3)).batch(4, True), "full batch"),
    ("filtered-to-nothing", lambda: _slices(_pairs(4)).filter(_never).batch(2), "0 steps"),
    ("unbatched-array", lambda: _pairs(1)[0][0], "batch axis"),
    ("empty-array", lambda: _pairs(0)[0], "empty"),
]  # fmt: skip


@pytest.mark.parametrize("data,words", [c[1:] for c in CARELESS], ids=[c[0] for c in CARELESS])
def test_fit_refuses_data_it_cannot_train_on(data, words):
    model = _model()
    data = data()
    kwargs = {} if isinstance(data, tf.data.Dataset) else {"y": data}
    with pytest.raises(InputError, match=words):
        model.fit(data, epochs=1, verbose=0, **kwargs)


@pytest.mark.parametrize("layer", [ReflectionPadding2D(3), PadToMultiple(8)], ids=str)
def test_padding_copes_with_a_replica_of_zero_images(layer):
    assert tuple(layer(np.zeros((0, 8, 8, 2), np.float32)).shape)[0] == 0


def test_reflection_padding_equals_numpy_reflect():
    x = np.random.default_rng(1).random((2, 9, 7, 3)).astype(np.float32)
    for p in (1, 2, 3):
        want = np.pad(x, [(0, 0), (p, p), (p, p), (0, 0)], mode="reflect")
        np.testing.assert_array_equal(np.asarray(ReflectionPadding2D(p)(x)), want)


def test_final_batch_smaller_than_the_replicas_trains():
    """Two logical CPUs, MirroredStrategy, 3 images in batches of 2: the last replica of
    the last step gets no image; the step must neither crash nor produce NaN."""
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("needs two logical CPU devices (configured before TensorFlow starts)")
    strategy = tf.distribute.MirroredStrategy([d.name for d in devices[:2]])
    with strategy.scope():
        model = _model()
    x, y = _pairs(3)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
    history = model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["g_loss"]).all()
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_zero_image_replica_step_contributes_zero_and_stays_finite():
    model = _model()
    empty = tf.zeros((0, 16, 16, 1))
    logs = model.train_step((empty, empty))
    assert float(logs["g_loss"]) == 0.0
    assert all(np.isfinite(w).all() for w in model.get_weights())
