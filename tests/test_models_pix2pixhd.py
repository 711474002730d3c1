"""Generators and discriminators: the original architecture, sizes, dropout, configs."""

import keras
import numpy as np
import pytest

import vsgan
from conftest import TINY
from vsgan.errors import InputError

rng = np.random.default_rng(0)


def test_default_global_generator_has_the_original_parameter_count():
    assert vsgan.GlobalGenerator(1, 1).count_params() == 182_430_721


def test_three_downsamplings_give_about_45_6_million_parameters():
    assert round(vsgan.GlobalGenerator(1, 1, n_downsample=3).count_params() / 1e6, 1) == 45.6


def test_conv_kernels_are_initialised_normal_0_02():
    g = vsgan.GlobalGenerator(1, 1, ngf=32, n_downsample=2, n_blocks=2)
    kernel = keras.ops.convert_to_numpy(g.get_layer("block0").conv1.kernel).ravel()
    assert abs(kernel.mean()) < 0.002 and 0.019 < kernel.std() < 0.021


@pytest.mark.parametrize("size", [(32, 32), (30, 45), (7, 3), (64, 17)])
def test_generator_serves_any_size_in_tanh_range(size):
    g = vsgan.GlobalGenerator(2, 3, ngf=4, n_downsample=3, n_blocks=1)
    y = keras.ops.convert_to_numpy(g(rng.normal(size=(2, *size, 2)).astype("float32")))
    assert y.shape == (2, *size, 3)
    assert np.all(np.abs(y) <= 1.0)


def test_dropout_is_off_at_inference_and_on_for_sampling():
    g = vsgan.GlobalGenerator(1, 1, ngf=8, n_downsample=2, n_blocks=2, dropout=0.2)
    x = rng.normal(size=(1, 32, 32, 1)).astype("float32")
    a, b = (keras.ops.convert_to_numpy(g(x, training=False)) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    c, d = (keras.ops.convert_to_numpy(g(x, training=True)) for _ in range(2))
    assert np.abs(c - d).max() > 1e-4


def test_local_enhancer_sums_global_features_and_marks_g1_layers():
    g = vsgan.LocalEnhancer(1, 2, ngf=4, n_downsample=2, n_blocks=1, n_blocks_local=1)
    assert g.multiple == 8
    assert g(np.zeros((1, 20, 27, 1), "float32")).shape == (1, 20, 27, 2)
    add = g.get_layer("local1_sum")
    assert isinstance(add, keras.layers.Add)
    # G1 is built with twice the filters and has no output head.
    assert g.get_layer("global_conv_in_conv").filters == 8
    names = {layer.name for layer in g.global_layers()}
    assert "global_block0" in names and not any("conv_out" in n for n in names)


def test_patchgan_outputs_every_layer_with_the_original_patch_sizes():
    d = vsgan.PatchDiscriminator(2, ndf=8, n_layers=3)
    feats = d(np.zeros((1, 512, 512, 2), "float32"))
    assert len(feats) == 5
    assert feats[-1].shape == (1, 67, 67, 1)
    assert [f.shape[-1] for f in feats] == [8, 16, 32, 64, 1]
    assert vsgan.PatchDiscriminator(2, ndf=64).count_params() == 2_763_713


def test_multiscale_discriminator_sees_pooled_inputs():
    d = vsgan.MultiScaleDiscriminator(2, ndf=4, num_d=3)
    outs = d(np.zeros((2, 256, 256, 2), "float32"))
    assert [s[-1].shape[1] for s in outs] == [35, 19, 11]


def test_pix2pixhd_config_round_trip_rebuilds_the_same_architecture():
    m = vsgan.Pix2PixHD(2, 3, dropout=0.2, lambda_l1=5.0, output_channels=["a", "b", "c"], **TINY)
    m2 = vsgan.Pix2PixHD.from_config(m.get_config())
    assert m2.get_config() == m.get_config()
    assert m2.generator.count_params() == m.generator.count_params()
    assert m2.output_channels == ["a", "b", "c"] and m2.input_channels == ["input0", "input1"]


def test_split_outputs_builds_one_generator_per_stain():
    m = vsgan.Pix2PixHD(1, 2, split_outputs=True, **TINY)
    single = vsgan.Pix2PixHD(1, 1, **TINY).generator.count_params()
    assert m.generator.count_params() == 2 * single
    assert m.generator(np.zeros((1, 16, 16, 1), "float32")).shape == (1, 16, 16, 2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(in_channels=0), "in_channels"),
        (dict(gan_loss="wgan"), "lsgan"),
        (dict(output_channels=["a", "b"]), "one name per channel"),
    ],
)
def test_bad_constructor_arguments_say_what_to_fix(kwargs, message):
    with pytest.raises((InputError, ValueError), match=message):
        vsgan.Pix2PixHD(**{"in_channels": 1, "out_channels": 1, **TINY, **kwargs})


def _dropout_states(generator):
    layers = generator._flatten_layers(include_self=False, recursive=True)
    drops = [layer for layer in layers if isinstance(layer, keras.layers.Dropout)]
    return [layer.seed_generator.state for layer in drops]


@pytest.mark.parametrize(
    "config",
    [dict(), dict(n_local_enhancers=1, n_blocks_local=1), dict(split_outputs=True)],
    ids=["global", "local_enhancer", "split_outputs"],
)
def test_split_at_dropout_recomposes_the_generator_in_both_modes(config):
    from vsgan.models.generator import split_at_dropout

    g = vsgan.Pix2PixHD(2, 2, dropout=0.5, **{**TINY, **config}).generator
    prefix, rest = split_at_dropout(g)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in prefix._flatten_layers())
    # The layers are shared, not copied: the two halves use the generator's own weights.
    ids = {id(v) for v in g.weights}
    assert {id(v) for v in prefix.weights + rest.weights} <= ids
    x = rng.normal(size=(3, 21, 26, 2)).astype("float32")
    feats = prefix(x)
    np.testing.assert_array_equal(np.asarray(rest(feats)), np.asarray(g(x)))
    # With dropout on and the same random state, the very same masks are drawn.
    states = [s.numpy() for s in _dropout_states(g)]
    whole = np.asarray(g(x, training=True))
    for state, value in zip(_dropout_states(g), states):
        state.assign(value)
    split = np.asarray(rest(feats, training=True))
    np.testing.assert_allclose(split, whole, atol=1e-6)
    assert np.abs(whole - np.asarray(g(x))).max() > 1e-3  # dropout really was on
    if config.get("n_local_enhancers"):  # the enhancer's front end is deterministic too
        assert any(layer.name == "local1_down_conv" for layer in prefix.layers)
    g.set_weights([w * 0.5 for w in g.get_weights()])  # later weights are seen by both
    np.testing.assert_array_equal(np.asarray(rest(prefix(x))), np.asarray(g(x)))


def test_split_at_dropout_is_none_without_dropout():
    g = vsgan.GlobalGenerator(1, 1, ngf=8, n_downsample=2, n_blocks=1)
    assert g.split_at_dropout() is None
