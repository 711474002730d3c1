"""The padding, normalisation and pooling layers equal their PyTorch definitions."""

import keras
import numpy as np
import pytest

from vsgan.models.layers import (
    CropLike,
    CropTopLeft,
    Downsample,
    InstanceNormalization,
    PadToMultiple,
    ReflectionPadding2D,
)

rng = np.random.default_rng(0)


def test_reflection_padding_matches_numpy_reflect():
    x = rng.normal(size=(2, 7, 9, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(ReflectionPadding2D(3)(x))
    np.testing.assert_array_equal(y, np.pad(x, [(0, 0), (3, 3), (3, 3), (0, 0)], mode="reflect"))


def test_instance_norm_normalises_each_image_and_channel():
    x = rng.normal(3.0, 5.0, size=(2, 16, 12, 4)).astype("float32")
    y = keras.ops.convert_to_numpy(InstanceNormalization()(x))
    mean, var = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), atol=1e-5)
    assert not InstanceNormalization().weights  # affine=False: nothing to learn


def test_downsample_excludes_padding_from_average():
    x = rng.normal(size=(1, 6, 5, 2)).astype("float32")
    y = keras.ops.convert_to_numpy(Downsample()(x))
    assert y.shape == (1, 3, 3, 2)
    for i in range(3):
        for j in range(3):
            rows = slice(max(2 * i - 1, 0), min(2 * i + 2, 6))
            cols = slice(max(2 * j - 1, 0), min(2 * j + 2, 5))
            np.testing.assert_allclose(y[0, i, j], x[0, rows, cols].mean(axis=(0, 1)), atol=1e-6)


def test_transposed_conv_plus_crop_follows_torch_indexing():
    # torch ConvTranspose2d(3, stride=2, padding=1, output_padding=1): out[o] += x[i] w[k]
    # where o = 2 i - 1 + k.
    x = rng.normal(size=(1, 4, 5, 1)).astype("float32")
    conv = keras.layers.Conv2DTranspose(1, 3, strides=2, padding="valid", use_bias=False)
    y = keras.ops.convert_to_numpy(CropTopLeft()(conv(x)))
    w = keras.ops.convert_to_numpy(conv.kernel)[:, :, 0, 0]
    ref = np.zeros((8, 10), "float32")
    for i in range(4):
        for j in range(5):
            for ki in range(3):
                for kj in range(3):
                    o, p = 2 * i - 1 + ki, 2 * j - 1 + kj
                    if 0 <= o < 8 and 0 <= p < 10:
                        ref[o, p] += x[0, i, j, 0] * w[ki, kj]
    np.testing.assert_allclose(y[0, :, :, 0], ref, atol=1e-5)


@pytest.mark.parametrize("h, w", [(1, 1), (5, 17), (16, 16), (33, 2)])
def test_pad_to_multiple_and_crop_back(h, w):
    x = rng.normal(size=(1, h, w, 1)).astype("float32")
    padded = keras.ops.convert_to_numpy(PadToMultiple(16)(x))
    assert padded.shape[1] % 16 == 0 and padded.shape[2] % 16 == 0
    assert padded.shape[1] == max(-(-h // 16) * 16, 32)
    assert padded.shape[2] == max(-(-w // 16) * 16, 32)
    np.testing.assert_array_equal(padded[:, :h, :w], x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(CropLike()([padded, x])), x)


@pytest.mark.parametrize(
    "shape, filters, kernel, strides",
    [((2, 19, 23, 5), 1, 7, 1), ((1, 12, 12, 3), 4, 4, 1), ((2, 16, 16, 4), 6, 3, 2)],
)
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_conv2d_gradients_as_forward_convs_equal_keras(shape, filters, kernel, strides, policy):
    import tensorflow as tf

    from vsgan.models import layers

    keras.mixed_precision.set_global_policy(policy)
    ours = layers.Conv2D(filters, kernel, strides=strides)
    reference = keras.layers.Conv2D(filters, kernel, strides=strides)
    x = tf.constant(np.random.default_rng(0).normal(size=shape), tf.float32)
    ours.build(shape), reference.build(shape)
    reference.set_weights([np.random.default_rng(1).normal(size=w.shape) for w in ours.weights])
    ours.set_weights(reference.get_weights())
    assert ours._fast_gradients() == (strides == 1 and policy == "float32")
    results = []
    for layer in (ours, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.cast(layer(x), tf.float32)
            loss = tf.reduce_sum(y * tf.cos(y))
        results.append([y, *tape.gradient(loss, [x, *layer.trainable_weights])])
    tol = 1e-5 if policy == "float32" else 2e-2
    for a, b in zip(*results):
        scale = float(tf.reduce_max(tf.abs(b)))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=tol * scale)
