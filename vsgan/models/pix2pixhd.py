"""`Pix2PixHD`: the conditional GAN as a `keras.Model` that trains with `fit()`.

One generator forward pass per step feeds both updates: the discriminator learns to tell
(input, target) from (input, generated) pairs at several scales; the generator learns to
fool it and to match its features.
"""

from __future__ import annotations

import json
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from vsgan.data.normalize import StainPreprocessor
from vsgan.errors import InputError, TrainingDiverged
from vsgan.models import image_metrics, losses
from vsgan.models.discriminator import MultiScaleDiscriminator
from vsgan.models.generator import GlobalGenerator, LocalEnhancer


def _adam(learning_rate: float = 2e-4) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=0.5, beta_2=0.999)


def _build_generator(c: dict[str, Any]) -> keras.Model:
    """The generator for a config; one independent generator per channel if split."""

    def one(out_channels, name):
        if c["n_local_enhancers"] > 0:
            return LocalEnhancer(
                c["in_channels"],
                out_channels,
                ngf=c["ngf"],
                n_downsample=c["n_downsample"],
                n_blocks=c["n_blocks"],
                n_local_enhancers=c["n_local_enhancers"],
                n_blocks_local=c["n_blocks_local"],
                dropout=c["dropout"],
                name=name,
            )
        return GlobalGenerator(
            c["in_channels"],
            out_channels,
            ngf=c["ngf"],
            n_downsample=c["n_downsample"],
            n_blocks=c["n_blocks"],
            dropout=c["dropout"],
            name=name,
        )

    if not c["split_outputs"]:
        return one(c["out_channels"], "generator")
    # The seed trains one generator per stain; this stacks them into one stainer.
    inputs = keras.Input((None, None, c["in_channels"]), name="label_free")
    parts = [one(1, f"generator_{i}")(inputs) for i in range(c["out_channels"])]
    outputs = keras.layers.Concatenate(name="stains", dtype="float32")(parts)
    return keras.Model(inputs, outputs, name="generator")


def _check_calibration(value: Any, out_channels: int) -> str | None:
    """The calibration as canonical JSON, or `InputError` if it is not a usable record.

    The full check (quantiles grow with the level, bins sorted) is the inference layer's
    (`Calibration.from_config`); the model checks the shape of the record it stores.
    """
    if value is None:
        return None
    if hasattr(value, "get_config"):
        value = value.get_config()
    if not isinstance(value, dict):
        raise InputError(
            f"calibration must be a dict (Calibration.get_config()) or None, not {type(value)}."
        )
    required = {"scale", "floor", "edges", "quantiles"}
    if required - set(value):
        raise InputError(
            f"calibration lacks {sorted(required - set(value))}. Fix: make it with "
            "vsgan.inference.calibration.calibrate_model."
        )
    if len(value["quantiles"]) != out_channels:
        raise InputError(
            f"calibration holds {len(value['quantiles'])} channel(s), the model predicts "
            f"{out_channels}. Fix: recalibrate this model."
        )
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise InputError(f"calibration is not plain JSON data ({error}).") from None


# name -> (lowest, highest) whole value; beyond these no pix2pixHD model exists and the
# layers would fail deep inside Keras (or allocate without end).
_ARCHITECTURE_RANGES = {
    "ngf": (1, 4096),
    "n_downsample": (0, 10),
    "n_blocks": (0, 256),
    "n_local_enhancers": (0, 5),
    "n_blocks_local": (0, 256),
    "ndf": (1, 4096),
    "num_d": (1, 10),
    "n_layers_d": (1, 10),
}


def _check_architecture(**values) -> None:
    for name, value in values.items():
        if name in _ARCHITECTURE_RANGES:
            low, high = _ARCHITECTURE_RANGES[name]
            ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
            if not ok or not low <= value <= high:
                raise InputError(
                    f"Pix2PixHD {name}={value!r}: give a whole number from {low} to {high}."
                )
            continue
        ok = isinstance(value, int | float | np.number) and not isinstance(value, bool)
        ok = ok and np.isfinite(value) and value >= 0
        if name == "dropout":
            ok = ok and value < 1
        if not ok:
            limit = "in [0, 1)" if name == "dropout" else ">= 0"
            raise InputError(f"Pix2PixHD {name}={value!r}: give a finite number {limit}.")


class _StopOnNan(keras.callbacks.Callback):
    """`fit`'s own guard: the first NaN or Inf loss stops training, naming the step."""

    stops_on_nan = True

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        bad = {}
        for k, v in (logs or {}).items():
            try:
                if not np.isfinite(float(v)):
                    bad[k] = float(v)
            except (TypeError, ValueError):
                continue
        if bad:
            self.model.stop_training = True
            raise TrainingDiverged(
                f"Loss became {bad} at epoch {self.epoch + 1}, step {batch + 1}: training "
                "stopped; that batch changed no weight. Fix: check the data for NaN / Inf, "
                "lower the learning rate, or use float32."
            )


class _CountEpochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = self.steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs += 1

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1


def _check_fit_data(x, y) -> None:
    """Refuses empty or unbatched training data before Keras runs 0 steps on it."""
    if isinstance(x, tf.data.Dataset):
        if int(x.cardinality()) == 0:
            raise InputError(
                "fit was given an empty dataset (cardinality 0). Fix: check the data folder "
                "and the split; with drop_remainder, give at least one full batch."
            )
        first = tf.nest.flatten(x.element_spec)[0]
        rank = getattr(first, "shape", tf.TensorShape(None)).rank
        if rank is not None and rank != 4:
            raise InputError(
                f"fit was given a dataset of rank-{rank} elements {first.shape}; Pix2PixHD "
                "trains on batches (B, H, W, C). Fix: batch it, e.g. dataset.batch(4)."
            )
        return
    if x is None or isinstance(x, dict) or hasattr(x, "__next__") or callable(x):
        return  # generators and PyDatasets: checked by the 0-step test after fit
    for arr, what in ((x, "x"), (y, "y")):
        if arr is None or not hasattr(arr, "shape"):
            continue
        if len(arr.shape) != 4:
            raise InputError(
                f"fit was given {what} of shape {tuple(arr.shape)}; Pix2PixHD trains on "
                "(B, H, W, C) batches of images. Fix: add the batch axis (x[None]) or the "
                "channel axis (x[..., None])."
            )
        if arr.shape[0] == 0:
            raise InputError(f"fit was given an empty {what} (shape {tuple(arr.shape)}).")


@keras.saving.register_keras_serializable(package="vsgan")
class Pix2PixHD(keras.Model):
    """Pix2PixHD conditional GAN for virtual staining (label-free image -> stain).

    Images are NHWC float32 in model units (targets in [-1, 1], the tanh range);
    `vsgan.data` and `vsgan.stain` convert raw intensities using `normalization`.

    Args:
        in_channels: label-free input channels.
        out_channels: stain channels to predict.
        ngf: generator filters at the finest level.
        n_downsample: stride-2 convolutions of the global generator.
        n_blocks: residual blocks of the global generator.
        n_local_enhancers: coarse-to-fine enhancer levels (0: global generator only).
        n_blocks_local: residual blocks per local enhancer.
        ndf: discriminator filters of the first layer.
        num_d: discriminator scales.
        n_layers_d: strided layers per PatchGAN.
        dropout: residual-block dropout; also what `sample` uses for Monte-Carlo draws.
        gan_loss: "lsgan" (pix2pixHD), "hinge" or "bce" (non-saturating).
        lambda_gan: adversarial weight (1). With `lambda_gan=0, lambda_feat=0` the
            discriminator is skipped: a plain regression model (the L1 baseline).
        lambda_feat: feature-matching weight (10).
        lambda_l1: pixel L1 weight (0 in pix2pixHD; 100 in pix2pix).
        split_outputs: one independent generator per output channel (the seed's layout).
        input_channels: names of the input channels (default "input0", ...).
        output_channels: names of the stains (default "stain0", ...).
        normalization: the `vsgan.data.StainPreprocessor` that maps raw intensities to
            model units and back (or its config dict `{"input": ..., "target": ...}`),
            checked here and stored in the config, so predictions come back in stain units.
        calibration: what turns the prediction's spread into intervals (a plain dict,
            `vsgan.inference.calibration.Calibration.get_config()`), stored in the config so
            it saves and loads with the model; None (the default) for an uncalibrated model.

    Example:
    >>> from vsgan.training import schedules
    >>> model = Pix2PixHD(1, 1, ngf=8, n_downsample=2, n_blocks=1, ndf=8)
    >>> model.compile(niter=1, niter_decay=1)
    >>> x = np.zeros((2, 32, 32, 1), "float32")
    >>> history = model.fit(x, x, epochs=2, verbose=0, callbacks=schedules(model))
    >>> sorted(history.history)[:3]
    ['d_loss', 'g_feat', 'g_gan']
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        ngf: int = 64,
        n_downsample: int = 4,
        n_blocks: int = 9,
        n_local_enhancers: int = 0,
        n_blocks_local: int = 3,
        ndf: int = 64,
        num_d: int = 3,
        n_layers_d: int = 3,
        dropout: float = 0.0,
        gan_loss: str = "lsgan",
        lambda_gan: float = 1.0,
        lambda_feat: float = 10.0,
        lambda_l1: float = 0.0,
        split_outputs: bool = False,
        input_channels: list[str] | None = None,
        output_channels: list[str] | None = None,
        normalization: StainPreprocessor | dict[str, Any] | None = None,
        calibration: dict[str, Any] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        try:
            losses._check(gan_loss)
        except ValueError as error:
            raise InputError(f"{error} Fix: pick one of them.") from None
        for arg, names in (
            ("input_channels", input_channels),
            ("output_channels", output_channels),
        ):
            if names is not None and (
                isinstance(names, str | bytes)
                or not isinstance(names, list | tuple)
                or not all(isinstance(n, str) and n for n in names)
            ):
                raise InputError(f"{arg}={names!r}: give a list of channel names (strings).")
        _check_architecture(
            ngf=ngf, n_downsample=n_downsample, n_blocks=n_blocks,
            n_local_enhancers=n_local_enhancers, n_blocks_local=n_blocks_local, ndf=ndf,
            num_d=num_d, n_layers_d=n_layers_d, dropout=dropout, lambda_gan=lambda_gan,
            lambda_feat=lambda_feat, lambda_l1=lambda_l1,
        )  # fmt: skip
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int | np.integer) or value < 1:
                raise InputError(f"{arg}={value!r}: give a positive number of channels.")
        input_channels = list(input_channels or [f"input{i}" for i in range(in_channels)])
        output_channels = list(output_channels or [f"stain{i}" for i in range(out_channels)])
        if len(set(map(str, output_channels))) != len(output_channels):
            raise InputError(
                f"output_channels {output_channels} repeat a name: each stain is written and "
                "matched by its name. Fix: give every output channel its own name."
            )
        if len(input_channels) != in_channels or len(output_channels) != out_channels:
            raise InputError(
                f"{len(input_channels)} input and {len(output_channels)} output channel names "
                f"for {in_channels} -> {out_channels} channels: give one name per channel."
            )
        self._config = dict(
            in_channels=int(in_channels),
            out_channels=int(out_channels),
            ngf=ngf,
            n_downsample=n_downsample,
            n_blocks=n_blocks,
            n_local_enhancers=n_local_enhancers,
            n_blocks_local=n_blocks_local,
            ndf=ndf,
            num_d=num_d,
            n_layers_d=n_layers_d,
            dropout=float(dropout),
            gan_loss=gan_loss,
            lambda_gan=float(lambda_gan),
            lambda_feat=float(lambda_feat),
            lambda_l1=float(lambda_l1),
            split_outputs=bool(split_outputs),
            input_channels=input_channels,
            output_channels=output_channels,
        )
        for key, value in self._config.items():
            setattr(self, key, value)
        self.preprocessor = StainPreprocessor.coerce(normalization)
        self.calibration = calibration
        self.multiple = 2 ** (n_downsample + n_local_enhancers)
        self.generator = _build_generator(self._config)
        self.discriminator = MultiScaleDiscriminator(
            in_channels + out_channels, ndf, num_d, n_layers_d, name="discriminator"
        )
        self.adversarial = bool(lambda_gan or lambda_feat)
        names = ["d_loss", "g_gan", "g_feat"] if self.adversarial else []
        names = ["g_loss", *names] + (["g_l1"] if lambda_l1 or not self.adversarial else [])
        self.loss_trackers = {n: keras.metrics.Mean(name=n) for n in names}
        self.image_trackers = {n: keras.metrics.Mean(name=n) for n in ("psnr", "ssim", "pearson_r")}
        self.g_optimizer = self.d_optimizer = None
        self.built = True

    # ----------------------------------------------------------------- compile
    def compile(
        self,
        g_optimizer: keras.optimizers.Optimizer | None = None,
        d_optimizer: keras.optimizers.Optimizer | None = None,
        *,
        niter: int = 100,
        niter_decay: int = 100,
        niter_fix_global: int = 0,
        perceptual_model: keras.Model | None = None,
        lambda_perceptual: float = 10.0,
        **kwargs,
    ):
        """Configures training with the original defaults.

        Args:
            g_optimizer: generator optimizer (default Adam 2e-4, beta_1 0.5).
            d_optimizer: discriminator optimizer (same default; a separate instance).
            niter: epochs at the initial learning rate.
            niter_decay: epochs of linear decay to 0 afterwards.
            niter_fix_global: epochs during which G1 of a local enhancer stays frozen.
                The three are pix2pixHD's schedule; `vsgan.training.schedules(model)` turns
                them into the callbacks to pass to `fit` (the `vsgan train` entry adds them).
            perceptual_model: optional feature extractor (any Keras model taking the
                stain channels); its L1 feature distance is added to the generator loss.
                Nothing is downloaded; it is not saved with the model.
            lambda_perceptual: weight of the perceptual loss.
            **kwargs: passed to `keras.Model.compile` (e.g. `steps_per_execution`).
        """
        kwargs.setdefault("jit_compile", False)  # XLA recompiles per size and is slower on CPU
        super().compile(optimizer=None, **kwargs)
        self.g_optimizer = g_optimizer or _adam()
        self.d_optimizer = d_optimizer or _adam()
        self.base_learning_rates = tuple(
            float(ops.convert_to_numpy(opt.learning_rate))
            if not isinstance(opt._learning_rate, keras.optimizers.schedules.LearningRateSchedule)
            else None
            for opt in (self.g_optimizer, self.d_optimizer)
        )
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            # compile() only wraps self.optimizer; float16 gradients need loss scaling.
            self.g_optimizer = keras.optimizers.LossScaleOptimizer(self.g_optimizer)
            self.d_optimizer = keras.optimizers.LossScaleOptimizer(self.d_optimizer)
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.niter, self.niter_decay, self.niter_fix_global = niter, niter_decay, niter_fix_global
        self.perceptual_model, self.lambda_perceptual = perceptual_model, lambda_perceptual
        self._compile_args = dict(
            niter=niter,
            niter_decay=niter_decay,
            niter_fix_global=niter_fix_global,
            lambda_perceptual=lambda_perceptual,
        )

    def get_compile_config(self):
        if self.g_optimizer is None:
            return None

        def inner(opt):
            return opt.inner_optimizer if hasattr(opt, "inner_optimizer") else opt

        def serialize(opt, base_lr):
            config = keras.optimizers.serialize(inner(opt))
            if base_lr is not None:  # the schedule's start, not the decayed current rate
                config["config"]["learning_rate"] = base_lr
            return config

        return {
            "g_optimizer": serialize(self.g_optimizer, self.base_learning_rates[0]),
            "d_optimizer": serialize(self.d_optimizer, self.base_learning_rates[1]),
            **self._compile_args,
        }

    def compile_from_config(self, config):
        config = dict(config)
        g = keras.optimizers.deserialize(config.pop("g_optimizer"))
        d = keras.optimizers.deserialize(config.pop("d_optimizer"))
        self.compile(g, d, **config)

    @property
    def metrics(self):
        return [*self.loss_trackers.values(), *self.image_trackers.values()]

    # ---------------------------------------------------------------- training
    def call(self, x, training=False):
        return self.generator(x, training=training)

    def _compute_losses(self, x, y, fake, training):
        values = {"g_loss": 0.0}
        if self.adversarial:
            pair = lambda img: ops.concatenate([x, img], axis=-1)  # noqa: E731
            d_fake = self._scales(self.discriminator(pair(fake), training=training))
            d_real = self._scales(self.discriminator(pair(y), training=training))
            values["d_loss"] = losses.discriminator_loss(d_real, d_fake, self.gan_loss)
            values["g_gan"] = losses.generator_adversarial_loss(d_fake, self.gan_loss)
            values["g_feat"] = losses.feature_matching_loss(
                d_real, d_fake, self.n_layers_d, self.lambda_feat
            )
            values["g_loss"] = self.lambda_gan * values["g_gan"] + values["g_feat"]
        if "g_l1" in self.loss_trackers:
            values["g_l1"] = ops.mean(ops.abs(fake - y))
            values["g_loss"] += (self.lambda_l1 or 1.0) * values["g_l1"]
        if self.perceptual_model is not None:
            values["g_loss"] += self.lambda_perceptual * self._perceptual(fake, y)
        return values

    def _scales(self, outputs):
        # Keras returns one scale's list of feature maps unnested: nest it again.
        return outputs if isinstance(outputs[0], list | tuple) else [outputs]

    def _perceptual(self, fake, y):
        f, r = self.perceptual_model(fake), self.perceptual_model(y)
        f, r = (f, r) if isinstance(f, list | tuple) else ([f], [r])
        return sum(
            ops.mean(ops.abs(ops.cast(a, "float32") - ops.stop_gradient(ops.cast(b, "float32"))))
            for a, b in zip(f, r)
        )

    def _unpack(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        if y is None:  # one packed tensor: input channels, then target channels
            x, y = x[..., : self.in_channels], x[..., self.in_channels :]
        return ops.cast(x, "float32"), ops.cast(y, "float32")

    def train_step(self, data):
        """One step; a step whose losses or gradients are not finite changes no weight.

        The bad batch still shows in the logs (NaN), where `fit`'s guard stops training
        with `TrainingDiverged`, the weights being those before the batch. A replica that
        gets no image (the last, short batch under `MirroredStrategy`) contributes zero.
        """
        x, y = self._unpack(data)
        # Replica gradients are summed, so each replica contributes its mean / replicas.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        g_vars = self.generator.trainable_variables
        d_vars = self.discriminator.trainable_variables
        has_images = tf.shape(x)[0] > 0
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = self.generator(x, training=True)  # the one generator pass of the step
            values = self._compute_losses(x, y, fake, training=True)
            values = {
                k: tf.where(has_images, tf.cast(v, "float32"), 0.0) for k, v in values.items()
            }
            g_loss = self.g_optimizer.scale_loss(values["g_loss"] / replicas)
            if self.adversarial:
                d_loss = self.d_optimizer.scale_loss(values["d_loss"] / replicas)
        # Both gradients come from the same weights; D is updated first, then G.
        updates = []
        if self.adversarial:
            updates.append((self.d_optimizer, d_tape.gradient(d_loss, d_vars), d_vars))
        updates.append((self.g_optimizer, g_tape.gradient(g_loss, g_vars), g_vars))
        finite = [tf.reduce_all(tf.math.is_finite(v)) for v in values.values()]
        # Loss-scaled (float16) gradients overflow by design: LossScaleOptimizer skips those
        # steps and lowers its scale itself, so only the losses are checked there.
        finite += [
            tf.reduce_all(tf.math.is_finite(g))
            for opt, grads, _ in updates
            if not isinstance(opt, keras.optimizers.LossScaleOptimizer)
            for g in grads
            if g is not None
        ]
        ok = tf.reduce_all(tf.stack(finite))
        context = tf.distribute.get_replica_context()
        if replicas > 1 and context is not None:
            # One decision for all replicas; the step's gradients become zero when any is bad.
            bad = context.all_reduce(
                tf.distribute.ReduceOp.SUM, tf.cast(tf.logical_not(ok), "float32")
            )
            ok = bad < 0.5
            for opt, grads, variables in updates:
                safe = [None if g is None else tf.where(ok, g, tf.zeros_like(g)) for g in grads]
                opt.apply_gradients(zip(safe, variables))
        else:

            def apply():
                for opt, grads, variables in updates:
                    opt.apply_gradients(zip(grads, variables))
                return tf.constant(True)

            tf.cond(ok, apply, lambda: tf.constant(False))
        for name, tracker in self.loss_trackers.items():
            tracker.update_state(values[name])
        return self._logs(self.loss_trackers.values())

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`, refusing data it cannot train on and stopping on NaN.

        Unlike plain Keras, an empty dataset, an unbatched one (single (H, W, C) images) or
        one that yields no full batch raise `InputError` instead of "training" 0 steps, and
        a NaN or Inf loss stops training with `TrainingDiverged` (its batch changes no
        weight) unless a callback with `stops_on_nan` (`vsgan.training.NanGuard`) is given.
        """
        _check_fit_data(x, y)
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if not any(getattr(cb, "stops_on_nan", False) for cb in callbacks):
            callbacks.append(_StopOnNan())
        counter = _CountEpochs()
        callbacks.append(counter)
        history = super().fit(x, y, *args, callbacks=callbacks, **kwargs)
        # No epoch begun: a resumed run that had already finished (BackupAndRestore).
        if counter.steps == 0 and counter.epochs and not self.stop_training:
            raise InputError(
                "fit trained 0 steps: the data yields no batch (an empty dataset, or fewer "
                "examples than one batch with drop_remainder). Fix: give more data, a smaller "
                "batch size, or batch without drop_remainder."
            )
        return history

    def _logs(self, trackers):
        logs = {t.name: t.result() for t in trackers}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras concatenates per-replica logs across workers; scalars cannot be (keras 20585).
            logs = {k: ops.reshape(v, (1,)) for k, v in logs.items()}
        return logs

    def test_step(self, data):
        x, y = self._unpack(data)
        fake = self.generator(x, training=False)
        values = self._compute_losses(x, y, fake, training=False)
        for name, tracker in self.loss_trackers.items():
            tracker.update_state(values[name])
        for name, fn in (
            ("psnr", image_metrics.psnr),
            ("ssim", image_metrics.ssim),
            ("pearson_r", image_metrics.pearson_r),
        ):
            self.image_trackers[name].update_state(fn(fake, y))
        return self._logs(self.metrics)

    def load_global_weights(self, global_model: Pix2PixHD) -> None:
        """Copies a separately trained global generator into this model's G1.

        Args:
            global_model: a `Pix2PixHD` with `n_local_enhancers=0` and
                `ngf * 2**n_local_enhancers` filters (its output head is dropped).
        """
        source = global_model.generator
        for layer in self.generator.global_layers():
            src = source.get_layer(layer.name.removeprefix("global_"))
            layer.set_weights(src.get_weights())

    # ------------------------------------------------------------- calibration
    @property
    def calibration(self) -> dict[str, Any] | None:
        """The interval calibration (a plain dict) or None; see `vsgan.inference.calibration`."""
        text = self.__dict__.get("_calibration_json")
        return None if text is None else json.loads(text)

    @calibration.setter
    def calibration(self, value: dict[str, Any] | None) -> None:
        self.__dict__["_calibration_json"] = _check_calibration(value, self.out_channels)

    # ----------------------------------------------------------------- presets
    @classmethod
    def from_preset(cls, name: str, **kwargs) -> Pix2PixHD:
        """A pretrained model by preset name or `.keras` path (keras-hub style); see
        `vsgan.load_pretrained`.

        Example:
        >>> model = Pix2PixHD.from_preset("isl-nuclei")
        >>> model.output_channels
        ['dapi_confocal_maxproj']
        """
        from vsgan.zoo.presets import load_pretrained  # the zoo sits above models: look up late

        return load_pretrained(name, **kwargs)

    # ----------------------------------------------------------------- config
    def get_config(self):
        return {
            **super().get_config(),
            **self._config,
            "normalization": self.preprocessor.get_config(),
            "calibration": self.calibration,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("trainable", None)
        config.pop("dtype", None)
        return cls(**config)
