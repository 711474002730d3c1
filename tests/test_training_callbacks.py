"""Pix2PixHD training: fit, metrics, schedules, save/resume, mixed precision, MirroredStrategy."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from skimage.metrics import structural_similarity

import vsgan
from conftest import TINY
from vsgan.training.callbacks import EnhancerSchedule, LinearDecay, schedules


def pairs(n=8, size=32, seed=0):
    """Inputs and a learnable target (a smoothed, shifted copy) in [-1, 1]."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, size, size, 1)).astype("float32")
    y = np.tanh(x + np.roll(x, 1, axis=1)).astype("float32")
    return x, y


def tiny(**kwargs):
    model = vsgan.Pix2PixHD(1, 1, **{**TINY, **kwargs})
    model.compile()
    return model


def weights(model):
    return [np.array(w) for w in model.weights]


def test_fit_updates_both_networks_and_logs_losses_and_image_metrics():
    x, y = pairs()
    model = tiny()
    g0 = [np.array(w) for w in model.generator.weights]
    d0 = [np.array(w) for w in model.discriminator.weights]
    history = model.fit(x, y, batch_size=4, epochs=2, validation_data=(x, y), verbose=0)
    logs = history.history
    for key in ("d_loss", "g_loss", "g_gan", "g_feat", "val_g_loss", "val_psnr", "val_ssim"):
        assert len(logs[key]) == 2 and np.isfinite(logs[key]).all(), key
    assert -1 <= logs["val_pearson_r"][-1] <= 1 and 0 < logs["val_ssim"][-1] <= 1
    assert any(np.abs(a - np.array(b)).max() > 0 for a, b in zip(g0, model.generator.weights))
    assert any(np.abs(a - np.array(b)).max() > 0 for a, b in zip(d0, model.discriminator.weights))


@pytest.mark.parametrize("num_d", [1, 3])
def test_any_number_of_discriminator_scales_trains(num_d):
    x, y = pairs(n=2)
    history = tiny(num_d=num_d).fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["g_loss"]).all()


def test_one_generator_forward_pass_per_training_step(monkeypatch):
    x, y = pairs(n=4)
    model = vsgan.Pix2PixHD(1, 1, **TINY)
    model.compile(run_eagerly=True)
    calls = []
    original = model.generator.call
    monkeypatch.setattr(
        model.generator, "call", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert len(calls) == 2  # two steps


def test_validation_metrics_follow_the_reference_definitions():
    x, y = pairs(n=2, size=40)
    model = tiny()
    got = model.evaluate(x, y, batch_size=2, return_dict=True, verbose=0)
    pred = model.generator.predict(x, verbose=0)

    def scale(a):
        return (a - a.min()) / (a.max() - a.min())

    ssim = np.mean(
        [
            structural_similarity(scale(p[..., 0]), scale(t[..., 0]), data_range=1.0)
            for p, t in zip(pred, y)
        ]
    )
    psnr = np.mean(
        [10 * np.log10(1 / np.mean((scale(p) - scale(t)) ** 2)) for p, t in zip(pred, y)]
    )
    r = np.mean([np.corrcoef(p.ravel(), t.ravel())[0, 1] for p, t in zip(pred, y)])
    assert got["ssim"] == pytest.approx(ssim, abs=1e-4)
    assert got["psnr"] == pytest.approx(psnr, abs=1e-3)
    assert got["pearson_r"] == pytest.approx(r, abs=1e-4)


def test_l1_and_perceptual_terms_enter_the_generator_loss():
    x, y = pairs(n=4)
    extractor = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(4, 3)])
    base = tiny(lambda_l1=0.0).evaluate(x, y, return_dict=True, verbose=0)
    with_l1 = tiny(lambda_l1=100.0)
    logs = with_l1.evaluate(x, y, return_dict=True, verbose=0)
    assert logs["g_loss"] == pytest.approx(
        logs["g_gan"] + logs["g_feat"] + 100 * logs["g_l1"], rel=1e-4
    )
    perceptual = vsgan.Pix2PixHD(1, 1, **TINY)
    perceptual.compile(perceptual_model=extractor, lambda_perceptual=1.0)
    p_logs = perceptual.evaluate(x, y, return_dict=True, verbose=0)
    assert p_logs["g_loss"] > p_logs["g_gan"] + p_logs["g_feat"] + 1e-4
    assert base["g_loss"] == pytest.approx(base["g_gan"] + base["g_feat"], rel=1e-5)


def test_linear_decay_schedule_for_both_optimizers():
    x, y = pairs(n=2)
    model = vsgan.Pix2PixHD(1, 1, **TINY)
    model.compile(niter=2, niter_decay=2)
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs: seen.append(
            (float(model.g_optimizer.learning_rate), float(model.d_optimizer.learning_rate))
        )
    )
    model.fit(x, y, epochs=4, verbose=0, callbacks=[*schedules(model), record])
    assert [g for g, _ in seen] == pytest.approx([2e-4, 2e-4, 2e-4, 1e-4])
    assert [d for _, d in seen] == pytest.approx([2e-4, 2e-4, 2e-4, 1e-4])
    assert LinearDecay(100, 100).factor(199) == pytest.approx(0.01)
    # A saved model restarts the schedule from the initial rate, not the decayed one.
    restored = vsgan.Pix2PixHD.from_config(model.get_config())
    restored.compile_from_config(model.get_compile_config())
    assert float(restored.g_optimizer.learning_rate) == pytest.approx(2e-4)
    assert restored.base_learning_rates == pytest.approx((2e-4, 2e-4))


def test_local_enhancer_schedule_freezes_g1_then_trains_jointly():
    x, y = pairs(n=2)
    g1 = tiny(ngf=8)  # the separately trained global generator (twice the filters)
    model = vsgan.Pix2PixHD(1, 1, **{**TINY, "ngf": 4}, n_local_enhancers=1, n_blocks_local=1)
    model.load_global_weights(g1)
    np.testing.assert_array_equal(
        model.generator.get_layer("global_block0").get_weights()[0],
        g1.generator.get_layer("block0").get_weights()[0],
    )
    model.compile(niter_fix_global=1)
    layer = lambda name: np.array(model.generator.get_layer(name).weights[0])  # noqa: E731
    before_g1, before_local = layer("global_block0"), layer("local1_block0")
    model.fit(x, y, epochs=1, verbose=0, callbacks=schedules(model))
    np.testing.assert_array_equal(layer("global_block0"), before_g1)
    assert np.abs(layer("local1_block0") - before_local).max() > 0
    model.fit(x, y, epochs=2, initial_epoch=1, verbose=0, callbacks=schedules(model))
    assert np.abs(layer("global_block0") - before_g1).max() > 0
    assert isinstance(EnhancerSchedule(1), keras.callbacks.Callback)


def test_keras_file_round_trip_restores_networks_and_optimizers(tmp_path):
    x, y = pairs()
    model = tiny(dropout=0.0)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "run.keras")
    loaded = keras.models.load_model(tmp_path / "run.keras")
    assert isinstance(loaded, vsgan.Pix2PixHD)
    for a, b in zip(weights(model), weights(loaded)):
        np.testing.assert_array_equal(a, b)
    for opt in ("g_optimizer", "d_optimizer"):
        ours, theirs = getattr(model, opt), getattr(loaded, opt)
        assert int(theirs.iterations) == int(ours.iterations) == 2
        for a, b in zip(ours.variables, theirs.variables):
            np.testing.assert_array_equal(np.array(a), np.array(b))
    # Continuing either gives the same weights: nothing of the training state was lost.
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    loaded.fit(x, y, batch_size=4, epochs=1, verbose=0)
    for a, b in zip(weights(model), weights(loaded)):
        np.testing.assert_allclose(a, b, atol=1e-6)


class _Crash(keras.callbacks.Callback):
    def __init__(self, at_step):
        super().__init__()
        self.at_step, self.step = at_step, 0

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step == self.at_step:
            raise RuntimeError("simulated crash")


def test_backup_and_restore_resumes_to_the_uninterrupted_result(tmp_path):
    x, y = pairs()
    keras.utils.set_random_seed(1)
    reference = tiny()
    reference.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0)

    keras.utils.set_random_seed(1)
    model = tiny()
    backup = keras.callbacks.BackupAndRestore(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="simulated crash"):
        model.fit(
            x,
            y,
            batch_size=4,
            epochs=3,
            shuffle=False,
            verbose=0,
            callbacks=[backup, _Crash(at_step=5)],
        )  # mid epoch 3
    keras.utils.set_random_seed(2)
    resumed = tiny()  # a fresh process would start from other random weights
    history = resumed.fit(
        x,
        y,
        batch_size=4,
        epochs=3,
        shuffle=False,
        verbose=0,
        callbacks=[keras.callbacks.BackupAndRestore(tmp_path / "backup")],
    )
    assert len(history.history["g_loss"]) == 1  # only the interrupted epoch ran again
    for a, b in zip(weights(reference), weights(resumed)):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_without_nan(policy):
    keras.mixed_precision.set_global_policy(policy)
    x, y = pairs(n=4)
    model = tiny(dropout=0.2)
    if policy == "mixed_float16":
        assert isinstance(model.g_optimizer, keras.optimizers.LossScaleOptimizer)
        assert isinstance(model.d_optimizer, keras.optimizers.LossScaleOptimizer)
    history = model.fit(x, y, batch_size=2, epochs=2, verbose=0)
    for values in history.history.values():
        assert np.isfinite(values).all()
    out = model.generator(x)
    assert out.dtype == "float32"
    assert np.isfinite(keras.ops.convert_to_numpy(out)).all()


def test_mirrored_strategy_matches_single_device_training():
    # SGD, not Adam: Adam turns the ~0 gradients of biases before instance norm into
    # full-size steps of either sign, so rounding noise would decide them.
    def sgd_model():
        model = vsgan.Pix2PixHD(1, 1, **TINY)
        model.compile(keras.optimizers.SGD(0.05), keras.optimizers.SGD(0.05))
        return model

    x, y = pairs(n=8)
    keras.utils.set_random_seed(3)
    single = sgd_model()
    init = weights(single)
    h1 = single.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        mirrored = sgd_model()
    mirrored.set_weights(init)
    h2 = mirrored.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(weights(single), weights(mirrored)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # Losses are logged at their true value, not divided by the replica count.
    assert h2.history["g_loss"][0] == pytest.approx(h1.history["g_loss"][0], rel=1e-4)
