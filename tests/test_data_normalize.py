"""Normalisation: the documented maths, exact inversion, TF == numpy, JSON round trip."""

import json

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from vsgan.data.normalize import Normalization
from vsgan.errors import InputError

RNG = np.random.default_rng(0)


def test_fixed_is_the_seeds_divide_by_4400():
    norm = Normalization.fixed(4400)
    raw = np.array([0.0, 1100.0, 4400.0, 8800.0]).reshape(1, 4, 1)
    np.testing.assert_allclose(norm.normalize(raw).ravel(), raw.ravel() / 4400 * 2 - 1, atol=1e-6)
    np.testing.assert_allclose(norm.denormalize(norm.normalize(raw)), raw, rtol=1e-6)
    two = Normalization.fixed([4400, 18372])  # nuclei and cytoplasm constants, one per channel
    np.testing.assert_allclose(two.normalize(np.full((1, 1, 2), [4400, 18372])), [[[1, 1]]])


def test_percentile_maps_low_high_to_minus_one_one():
    x = RNG.integers(100, 60000, (64, 64, 2)).astype(np.uint16)
    norm = Normalization("percentile", low=1, high=99).fit([x])
    y = norm.normalize(x)
    assert y.dtype == np.float32
    lo, hi = np.percentile(x.reshape(-1, 2), [1, 99], axis=0)
    np.testing.assert_allclose(
        norm.normalize(np.stack([lo, hi])[None]), [[[-1, -1], [1, 1]]], atol=1e-5
    )
    inside = np.mean((y >= -1) & (y <= 1), axis=(0, 1))
    np.testing.assert_allclose(inside, 0.98, atol=0.01)


def test_meanstd_and_median_iqr_statistics_over_several_fields():
    a, b = RNG.normal(10, 2, (32, 32, 1)), RNG.normal(20, 3, (16, 16, 1))
    both = np.concatenate([a.ravel(), b.ravel()])
    m = Normalization("meanstd").fit([a, b])
    assert m.offset[0] == pytest.approx(both.mean()) and m.scale[0] == pytest.approx(both.std())
    q = Normalization("median_iqr").fit([a, b])
    q25, q50, q75 = np.percentile(both, [25, 50, 75])
    assert q.offset[0] == pytest.approx(q50) and q.scale[0] == pytest.approx(q75 - q25)


def test_per_field_uses_each_image_and_cannot_be_inverted():
    norm = Normalization("meanstd", per_field=True)
    x = np.stack([RNG.normal(5, 1, (16, 16, 1)), RNG.normal(500, 50, (16, 16, 1))])
    y = norm.normalize(x)
    np.testing.assert_allclose(y.mean(axis=(1, 2, 3)), [0, 0], atol=1e-5)
    np.testing.assert_allclose(y.std(axis=(1, 2, 3)), [1, 1], atol=1e-5)
    with pytest.raises(InputError, match="per_field.*cannot be inverted"):
        norm.denormalize(y)
    with pytest.raises(InputError, match="cannot be inverted"):
        norm.denormalize_tf(y)


def test_errors():
    with pytest.raises(InputError, match="not fitted"):
        Normalization("percentile").normalize(np.zeros((2, 2, 1)))
    with pytest.raises(InputError, match="unknown normalisation"):
        Normalization("minmax")
    with pytest.raises(InputError, match="offset= and scale="):
        Normalization("fixed")
    with pytest.raises(InputError, match="2 channel"):
        Normalization.fixed([1, 2]).normalize(np.zeros((2, 2, 3)))


@pytest.mark.parametrize("method", ["percentile", "meanstd", "median_iqr"])
@pytest.mark.parametrize("per_field", [False, True])
def test_tf_matches_numpy(method, per_field):
    x = RNG.gamma(2.0, 300.0, (2, 17, 13, 3)).astype(np.float32)
    norm = Normalization(method, per_field=per_field, low=2.0, high=99.5)
    if not per_field:
        norm.fit(list(x))
    np.testing.assert_allclose(
        norm.normalize_tf(tf.constant(x)).numpy(), norm.normalize(x), rtol=1e-4, atol=1e-4
    )
    if not per_field:
        y = norm.normalize(x)
        np.testing.assert_allclose(norm.denormalize_tf(tf.constant(y)).numpy(), x, rtol=1e-4)


def test_config_is_json_and_round_trips():
    norm = Normalization("percentile", low=0.5, high=99.9).fit([RNG.random((8, 8, 2))])
    config = json.loads(json.dumps(norm.get_config()))
    again = Normalization.from_config(config)
    assert again == norm
    x = RNG.random((8, 8, 2))
    np.testing.assert_array_equal(again.normalize(x), norm.normalize(x))
    model_config = {"input": Normalization("identity").get_config(), "target": config}
    json.dumps(model_config)


@settings(max_examples=30, deadline=None)
@given(
    method=st.sampled_from(["percentile", "meanstd", "median_iqr", "identity"]),
    loc=st.floats(-1e4, 1e4),
    spread=st.floats(1e-2, 1e4),
)
def test_denormalize_inverts_normalize(method, loc, spread):
    x = (loc + spread * np.random.default_rng(1).standard_normal((9, 7, 2))).astype(np.float32)
    norm = Normalization(method).fit([x])
    np.testing.assert_allclose(
        norm.denormalize(norm.normalize(x)), x, rtol=1e-4, atol=1e-4 * (abs(loc) + spread)
    )
