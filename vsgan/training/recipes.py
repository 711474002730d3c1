"""Training recipes: dataset + architecture + schedule, and `train`, which runs one into a folder.

A run folder holds everything a run made and needs to go on after a crash:

    run/
      recipe.json      the recipe as run (with the data folder)
      model.keras      the whole model after the last finished epoch (written atomically)
      backup/          weights + optimizer state after the last finished epoch: a restarted
                       `train` (even after SIGKILL) resumes from here
      history.csv      one row of losses and validation metrics per epoch
      calibration.json the interval calibration fitted on the validation split after
                       training (also stored in model.keras; see vsgan.inference.calibration)
      logs/            TensorBoard scalars and input / target / prediction images per epoch

Running the same command again resumes; a finished run is never overwritten without
`overwrite=True`. With `deterministic=True` (`vsgan train --deterministic`) a run killed
at any point and resumed ends with exactly the weights of an uninterrupted run with the
same seed on the same machine (TensorFlow op determinism, single-threaded decoding).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from vsgan.data.normalize import StainPreprocessor
from vsgan.errors import InputError, VsganError
from vsgan.models import Pix2PixHD
from vsgan.training.callbacks import (
    AtomicBackupAndRestore,
    AtomicCheckpoint,
    NanGuard,
    SyncSamplerEpoch,
    enable_determinism,
    schedules,
)


@dataclasses.dataclass
class Recipe:
    """How to train one model.

    Args:
        dataset: a name of the dataset registry (`vsgan.datasets.real.BUILDERS`:
            "isl-condition-b", "mlcp-jurkat", "a549-vscyto2d", "synthetic") or a path to a
            `PairedDataset` JSON spec.
        dataset_args: keyword arguments of the dataset's spec constructor.
        model: `Pix2PixHD` keyword arguments (channel counts and names come from the data).
        patch_size: training crop side (None: whole images, e.g. 40x40 cells).
        batch_size: crops per step.
        steps_per_epoch: training steps per epoch, for crops (whole images: one pass).
        epochs: total epochs (`niter` constant + `niter_decay` decaying).
        niter: epochs at the initial learning rate.
        niter_decay: epochs of linear decay to 0.
        foreground_weighted: favour crops with target signal.
        val_batches: validation batches per epoch.
        seed: seeds weights, crops and augmentation.
        precision: "mixed_bfloat16" (default; ~1.9x faster on CPUs with bf16, same quality,
            see benchmarks/README.md) or "float32".
        deterministic: bit-reproducible runs, resumed or not (TensorFlow op determinism,
            one decoding thread); slower on GPU.
    """

    dataset: str = "synthetic"
    dataset_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    patch_size: int | None = 256
    batch_size: int = 4
    steps_per_epoch: int = 100
    epochs: int = 20
    niter: int = 10
    niter_decay: int = 10
    foreground_weighted: bool = True
    val_batches: int = 8
    seed: int = 0
    precision: str = "mixed_bfloat16"
    deterministic: bool = False

    def get_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Recipe:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(config) - known
        if unknown:
            raise InputError(f"unknown recipe keys {sorted(unknown)}; known: {sorted(known)}.")
        recipe = cls(**config)
        recipe.validate()
        return recipe

    def validate(self) -> None:
        """Raises `InputError` naming the first field of a wrong type or out of range."""
        for name in ("batch_size", "steps_per_epoch", "epochs", "val_batches"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"recipe {name}={value!r}: give a whole number >= 1.")
        for name in ("niter", "niter_decay", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"recipe {name}={value!r}: give a whole number >= 0.")
        p = self.patch_size
        if p is not None and (isinstance(p, bool) or not isinstance(p, int) or p < 1):
            raise InputError(f"recipe patch_size={p!r}: give a whole number of pixels or null.")
        if not isinstance(self.dataset_args, dict) or not isinstance(self.model, dict):
            raise InputError("recipe dataset_args and model must be mappings (JSON objects).")

    def replace(self, **changes: Any) -> Recipe:
        """A copy with the given fields changed (None values are ignored), validated.

        Changing `epochs` alone re-splits the schedule: half constant, half decaying, as
        pix2pixHD's 100 + 100.

        Example:
        >>> r = Recipe(epochs=20, niter=10, niter_decay=10).replace(epochs=6, seed=None)
        >>> r.epochs, r.niter, r.niter_decay
        (6, 3, 3)
        """
        changes = {k: v for k, v in changes.items() if v is not None}
        new = dataclasses.replace(self, **changes)
        if "epochs" in changes and not {"niter", "niter_decay"} & set(changes):
            if new.niter + new.niter_decay != new.epochs:
                new.niter = new.epochs // 2
                new.niter_decay = new.epochs - new.niter
        new.validate()
        return new

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recipe:
        """Reads a recipe from a JSON or YAML file."""
        try:
            text = Path(path).read_text()
            if str(path).endswith((".yaml", ".yml")):
                import yaml

                config = yaml.safe_load(text)
            else:
                config = json.loads(text)
        except Exception as error:  # OSError, JSON and YAML syntax errors alike
            raise InputError(
                f"{path}: not a readable recipe ({type(error).__name__}: {error}). Fix: write "
                'a JSON (or YAML) mapping of Recipe keys, e.g. {"dataset": "synthetic"}.'
            ) from None
        if not isinstance(config, dict):
            raise InputError(
                f"{path}: a recipe is a mapping of Recipe keys, not {type(config).__name__}."
            )
        try:
            return cls.from_config(config)
        except InputError as error:
            raise InputError(f"{path}: {error}") from None


def l1_baseline(recipe: Recipe) -> Recipe:
    """The same generator and budget trained on pixel L1 alone (no discriminator, no dropout).

    Model cards compare each preset with it: what the GAN adds (sharpness), what it costs.
    """
    generator = {
        k: recipe.model[k] for k in ("ngf", "n_downsample", "n_blocks") if k in recipe.model
    }
    model = {**generator, "lambda_gan": 0, "lambda_feat": 0, "lambda_l1": 1}
    return dataclasses.replace(recipe, model=model)


def get_recipe(path: str | os.PathLike) -> Recipe:
    """A recipe read from a JSON/YAML file (presets' recipes: `vsgan.zoo.preset_recipe`)."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such recipe file. Fix: give a JSON or YAML recipe file.")
    return Recipe.load(path)


def build_spec(recipe: Recipe, data: str | os.PathLike | None = None):
    """The `PairedDataset` a recipe trains on, with normalisations fitted on training pixels."""
    from vsgan.datasets.real import build

    return build(recipe.dataset, data, **recipe.dataset_args).fit_normalization()


def build_model(recipe: Recipe, spec) -> Pix2PixHD:
    """A compiled `Pix2PixHD` for a recipe and data spec, normalisation stored in its config."""
    try:
        model = Pix2PixHD(
            in_channels=spec.in_channels,
            out_channels=spec.out_channels,
            input_channels=spec.input_names,
            output_channels=spec.target_names,
            normalization=StainPreprocessor(spec.input_norm, spec.target_norm),
            **recipe.model,
        )
    except (TypeError, ValueError) as error:
        if isinstance(error, VsganError):
            raise
        raise InputError(
            f"recipe model settings {recipe.model} do not build a Pix2PixHD ({error}). Fix: "
            "use keyword arguments of vsgan.Pix2PixHD with their documented types."
        ) from None
    model.compile(niter=recipe.niter, niter_decay=recipe.niter_decay)
    return model


class ImageLogger(keras.callbacks.Callback):
    """Writes input | target | prediction image grids to TensorBoard after every epoch."""

    def __init__(self, log_dir: str, x: np.ndarray, y: np.ndarray):
        super().__init__()
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "images"))
        self.x, self.y = x, y

    def on_epoch_end(self, epoch, logs=None):
        pred = self.model.generator.predict(self.x, verbose=0)

        def show(a):  # first channel, each image scaled to [0, 1]
            a = a[..., :1]
            lo = a.min(axis=(1, 2, 3), keepdims=True)
            hi = a.max(axis=(1, 2, 3), keepdims=True)
            return (a - lo) / np.maximum(hi - lo, 1e-12)

        grid = np.concatenate([show(self.x), show(self.y), show(pred)], axis=2)
        with self.writer.as_default():
            tf.summary.image("input | target | prediction", grid, step=epoch, max_outputs=4)
        self.writer.flush()


def train(
    recipe: Recipe,
    out_dir: str | os.PathLike,
    data: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    force_resume: bool = False,
    verbose: int | str = "auto",
    strategy: str | None = None,
) -> Pix2PixHD:
    """Trains a recipe into `out_dir`, resuming from `out_dir/backup` if a run was cut short.

    The run folder is locked for the whole run (a second `train` on it is refused), only
    files vsgan wrote are ever removed, and a resume with another dataset, data folder,
    seed, patch size, batch size or model is refused unless `force_resume=True`
    (`vsgan.training.run_folder`).

    Args:
        recipe: what to train.
        out_dir: the run folder (see the module docstring).
        data: the dataset folder (or store); default: `$VSGAN_DATA` / the Keras cache. A
            given path that does not exist is refused (no fall-back).
        overwrite: start afresh: removes what vsgan wrote in `out_dir`, nothing else.
        force_resume: resume even if the saved recipe defines another experiment.
        verbose: Keras progress-bar setting.
        strategy: "mirrored" (one machine's devices) or "multiworker" (machines named in
            `TF_CONFIG`; workers other than the chief write `<out_dir>.worker<i>`); see
            `vsgan.training.distribute`. Default: one device.

    Returns:
        The trained model (also in `out_dir/model.keras`).
    """
    from vsgan.training.distribute import get_strategy, run_dir
    from vsgan.training.run_folder import data_path, locked

    data = data_path(data)
    strategy = get_strategy(strategy)  # first: multi-worker set-up precedes other TF work
    out = run_dir(out_dir, strategy)  # each worker locks and writes its own folder
    with locked(out) as run:
        return _train(
            recipe,
            out,
            data,
            overwrite=overwrite,
            verbose=verbose,
            run=run,
            force_resume=force_resume,
            strategy=strategy,
        )


def _train(
    recipe: Recipe,
    out_dir: str | os.PathLike,
    data: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    verbose: int | str = "auto",
    run=None,
    force_resume: bool = False,
    strategy=None,
) -> Pix2PixHD:
    """Trains a recipe into `out_dir`, resuming from `out_dir/backup` if a run was cut short.

    Args:
        recipe: what to train.
        out_dir: the run folder (see the module docstring).
        data: the dataset folder (or store); default: `$VSGAN_DATA` / the Keras cache.
        overwrite: start afresh even if `out_dir` holds a finished run.
        verbose: Keras progress-bar setting.
        strategy: the `tf.distribute.Strategy` to build and train under.

    Returns:
        The trained model (also in `out_dir/model.keras`).
    """
    from vsgan.data import make_dataset
    from vsgan.training.distribute import distribute_dataset

    out = Path(out_dir)
    backup = out / "backup"
    finished = (out / "model.keras").exists() and not backup.exists()
    if finished and not overwrite:
        raise VsganError(
            f"{out} already holds a finished run: pass overwrite=True (--overwrite) to "
            "train again, or choose another output folder."
        )
    recipe.validate()
    if not overwrite:  # a resume must continue the same experiment
        run.check_resume({**recipe.get_config(), "data": data}, force_resume)
    keras.mixed_precision.set_global_policy(recipe.precision)
    if recipe.deterministic:
        enable_determinism(recipe.seed)
    else:
        keras.utils.set_random_seed(recipe.seed)
    spec = build_spec(recipe, data)
    n_train = max(1, spec.num_fields("train"))
    if recipe.patch_size is None and spec.num_fields("train") < recipe.batch_size:
        raise InputError(
            f"batch_size={recipe.batch_size} but the training split has "
            f"{spec.num_fields('train')} field(s): whole-image batches would train 0 steps. "
            "Fix: use --batch-size at most the number of training fields, or a patch size."
        )
    per_field = -(-recipe.steps_per_epoch * recipe.batch_size // n_train)
    train_ds = make_dataset(
        spec,
        "train",
        recipe.patch_size,
        recipe.batch_size,
        patches_per_field=per_field if recipe.patch_size else None,
        foreground_weighted=recipe.foreground_weighted,
        seed=recipe.seed,
        workers=1 if recipe.deterministic else 2,
    )
    val_ds = make_dataset(spec, "val", recipe.patch_size, recipe.batch_size, seed=recipe.seed)
    val_ds = val_ds.take(recipe.val_batches).cache()
    try:
        x_show, y_show = next(iter(val_ds))
    except StopIteration:
        raise InputError(
            f"the validation split of {recipe.dataset!r} yields no batch of {recipe.batch_size}."
            " Fix: give more data, or a smaller --batch-size."
        ) from None
    with strategy.scope():  # variables and optimizers mirrored across replicas
        model = build_model(recipe, spec)
    # Only now that data and model are known to work is the run folder (re)made: only what
    # vsgan wrote is removed, the user's own files stay.
    if overwrite:
        run.clear()
    run.remove_temporaries()  # left by a run killed while saving (the lock is ours)
    run.record("recipe.json", "model.keras", "backup", "history.csv", "logs")
    (out / "recipe.json").write_text(
        json.dumps({**recipe.get_config(), "data": None if data is None else str(data)}, indent=2)
    )
    callbacks = [
        *schedules(model),
        SyncSamplerEpoch(train_ds.sampler),
        AtomicBackupAndRestore(backup),
        NanGuard(str(out / "model.keras")),
        AtomicCheckpoint(out / "model.keras"),
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(out / "logs"), write_graph=False),
        ImageLogger(str(out / "logs"), x_show.numpy()[:4], y_show.numpy()[:4]),
    ]
    model.fit(
        distribute_dataset(train_ds, strategy),
        validation_data=distribute_dataset(val_ds, strategy),
        epochs=recipe.epochs,
        callbacks=callbacks,
        verbose=verbose,
    )
    calibrate_run(model, spec, out)
    return model


def calibrate_run(model: Pix2PixHD, spec, out: Path) -> None:
    """Calibrates the trained model's intervals on the validation split, saves it again.

    No weights were fitted on the validation data and it is not the test data, so it is
    the calibration set of a run (`vsgan.inference.calibration.calibrate_split` defaults:
    the Monte-Carlo std of 8 samples with dropout, else absolute errors, in 8 bins of
    predicted intensity).
    """
    from vsgan.inference.calibration import calibrate_split
    from vsgan.io.files import atomic_path
    from vsgan.training.callbacks import atomic_save

    if not spec.num_fields("val"):
        return
    cal = calibrate_split(model, spec, "val")
    with atomic_path(out / "calibration.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(cal.get_config(), indent=1))
    atomic_save(model, out / "model.keras")
