"""Training recipes: dataset + architecture + schedule, and `train`, which runs one into a folder.

A run folder holds everything a run made and needs to go on after a crash:

    run/
      recipe.json      the recipe as run (with the data folder)
      model.keras      the whole model after the last finished epoch (written atomically)
      backup/          weights + optimizer state after the last finished epoch: a restarted
                       `train` (even after SIGKILL) resumes from here
      model_best.keras the model of the epoch with the best whole-field validation Pearson r
                       (`model_best.keras.json` says which epoch)
      history.csv      one row of losses and validation metrics per epoch: whole-field
                       `val_field_pearson_r/ssim/psnr`, crop-level `val_patch_*`
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

from vsgan.data.normalize import TARGET_HEADROOM, StainPreprocessor
from vsgan.errors import InputError, VsganError
from vsgan.models import Pix2PixHD
from vsgan.training.callbacks import (
    AtomicBackupAndRestore,
    AtomicCheckpoint,
    FieldValidation,
    LinearDecay,
    NanGuard,
    Snapshots,
    SyncSamplerEpoch,
    TimeBudget,
    enable_determinism,
    schedules,
)


@dataclasses.dataclass
class Recipe:
    """How to train one model.

    Args:
        dataset: a name of the dataset registry (`vsgan.datasets.real.BUILDERS`:
            "isl-condition-b", "mlcp-jurkat", "a549-vscyto2d", "synthetic"), a path to a
            `PairedDataset` JSON spec, or one's own data: a folder, an HCS ``plate.zarr`` or
            ``file.h5`` (``file.h5::group``), see `own_data_spec`.
        dataset_args: keyword arguments of the dataset's spec constructor (own data:
            ``inputs`` and ``targets`` patterns or channel names, optional ``val_fraction``).
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
        target_headroom: percentile target normalisations map the training's 99.8th
            percentile well below the top of the tanh range (`Normalization` headroom), so
            brighter signal stays predictable. 1: no headroom (the older presets).
        time_limit: seconds this run may take (`vsgan train --time-limit 45m`): it ends at an
            epoch boundary with the learning-rate decay fitted into the budget; `epochs` is
            then an upper bound.
        init_from: fine-tune: a preset name or `.keras` file whose weights, architecture and
            normalisation start the run (its channels must match the data's by name).
        val_tile_size: tile side of the whole-field validation (default: `stain`'s).
        augment: `vsgan.data.Augmentation` settings of the training crops, e.g.
            ``{"rotate_degrees": 45, "scale_range": [0.85, 1.15]}`` (None: the default, flips,
            90-degree turns, mild input contrast and noise).
        snapshots: keep the generator's weights of every epoch in ``snapshots/`` (for a
            snapshot ensemble).
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
    target_headroom: float = TARGET_HEADROOM
    time_limit: float | None = None
    init_from: str | None = None
    val_tile_size: int | None = None
    augment: dict[str, Any] | None = None
    snapshots: bool = False

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
        h = self.target_headroom
        if isinstance(h, bool) or not isinstance(h, int | float) or not 1 <= h <= 100:
            raise InputError(f"recipe target_headroom={h!r}: give a number from 1 to 100.")
        t = self.time_limit
        if t is not None and (isinstance(t, bool) or not isinstance(t, int | float) or t <= 0):
            raise InputError(f"recipe time_limit={t!r}: give a positive number of seconds.")
        if not isinstance(self.dataset_args, dict) or not isinstance(self.model, dict):
            raise InputError("recipe dataset_args and model must be mappings (JSON objects).")
        self.augmentation()

    def augmentation(self):
        """The `Augmentation` of the training crops (None: `make_dataset`'s default)."""
        from vsgan.data.augment import Augmentation

        if self.augment is None:
            return None
        if not isinstance(self.augment, dict):
            raise InputError(
                f"recipe augment={self.augment!r}: give a mapping of Augmentation settings."
            )
        args = dict(self.augment)
        if args.get("scale_range") is not None:
            args["scale_range"] = tuple(args["scale_range"])
        try:
            return Augmentation(**args)
        except TypeError as error:
            known = sorted(Augmentation.__dataclass_fields__)
            raise InputError(f"recipe augment: {error}. Known settings: {known}.") from None

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


OWN_DATA_DEFAULTS = dict(
    model=dict(ngf=16, n_downsample=3, n_blocks=4, ndf=16, num_d=2, dropout=0.2, lambda_l1=10),
    patch_size=256,
    batch_size=4,
    steps_per_epoch=50,
    epochs=20,
    precision="float32",
)
"""Own-data defaults (`vsgan train --data DIR`): the isl-nuclei preset's architecture and a
budget of about half an hour on a laptop CPU for 256 px crops (isl-nuclei: 2.5 s a step on two
cores). float32: bfloat16 is only faster on CPUs with bf16 instructions (AVX512-BF16, AMX) and
several times slower where it is emulated; `--precision mixed_bfloat16` on those and on GPUs."""


def is_own_data(dataset: str) -> bool:
    """True when a recipe's `dataset` names one's own data (a path), not a registered one."""
    from vsgan.datasets.real import BUILDERS

    if dataset in BUILDERS or dataset.endswith(".json"):
        return False
    path = Path(dataset.split("::")[0])
    return path.is_dir() or path.suffix.lower() in (".h5", ".hdf5", ".zarr")


def own_data_spec(
    path: str | os.PathLike,
    inputs: list[str],
    targets: list[str],
    *,
    val_fraction: float = 0.25,
    min_val_size: int = 0,
    seed: int = 0,
    log=print,
):
    """The `PairedDataset` of one's own data, split for training.

    Forms:
        - a folder: fields are its sub-folders holding files for every pattern, or the folder
          itself is one field; `inputs` / `targets` are glob patterns (``"bf_*.tif"``), each
          match one channel named by its file stem, in natural order (``z2`` before ``z10``);
        - ``plate.zarr``: an HCS OME-Zarr plate, `inputs` / `targets` are channel names;
        - ``file.h5`` or ``file.h5::group``: `inputs` / `targets` are dataset names (stacks
          (N, H, W) of fields, or single (H, W) images: one field).

    Several fields are split by field (`val_fraction`, at least one validation field); a
    single field is split by region (`vsgan.data.splits.split_regions`) and `log` says which
    region validates.
    """
    from vsgan.data.normalize import Normalization
    from vsgan.data.spec import PairedDataset
    from vsgan.data.splits import split_regions

    if not inputs or not targets:
        raise InputError(
            f"{path}: name the inputs and the targets. Fix: add --inputs PATTERN... --targets "
            "PATTERN... (file patterns in a folder, channel names in a zarr plate, dataset names "
            "in an HDF5 file)."
        )
    text = os.fspath(path)
    outer, _, group = text.partition("::")
    suffix = Path(outer).suffix.lower()
    norms = dict(input_norm=Normalization("percentile"), target_norm=Normalization("percentile"))
    if suffix == ".zarr":
        spec = PairedDataset.from_zarr_plate(
            outer, inputs, targets, val_fraction=val_fraction, seed=seed, **norms
        )
    elif suffix in (".h5", ".hdf5"):
        prefix = f"{group.strip('/')}/" if group else ""
        spec = PairedDataset.from_hdf5(
            outer,
            [prefix + d for d in inputs],
            [prefix + d for d in targets],
            val_fraction=val_fraction,
            seed=seed,
            **norms,
        )
        spec.input_names = [n.removeprefix(prefix) for n in spec.input_names]
        spec.target_names = [n.removeprefix(prefix) for n in spec.target_names]
    elif Path(outer).is_dir():
        try:
            spec = PairedDataset.from_folder(
                outer, inputs, targets, val_fraction=val_fraction, seed=seed, **norms
            )
        except InputError as error:
            if "too few fields" not in str(error):
                raise
            spec = None
        if spec is None or len(spec.fields) == 1:
            spec = PairedDataset.from_folder(outer, inputs, targets, val_fraction=0.0, **norms)
    else:
        raise InputError(
            f"{path}: not a folder, an HCS plate (.zarr) or an HDF5 file (.h5). Fix: give one "
            "of these to --data."
        )
    if len(spec.fields) == 1:
        field = spec.fields[0]
        x, _ = field.read()
        field.split = None
        field.regions = split_regions(
            x.shape[0], x.shape[1], val_fraction=val_fraction, min_size=min_val_size
        )
        y0, y1, x0, x1 = field.regions["val"][0]
        log(
            f"one field ({field.name}, {x.shape[0]}x{x.shape[1]} px): validating on rows "
            f"{y0}-{y1 - 1}, columns {x0}-{x1 - 1}; training on the rest."
        )
    else:
        val = [f.name for f in spec.fields_in("val")]
        log(f"{len(spec.fields)} fields: validating on {val}, training on the others.")
    log(f"channels: {spec.input_names} -> {spec.target_names}")
    return spec


def build_spec(recipe: Recipe, data: str | os.PathLike | None = None, *, log=print):
    """The `PairedDataset` a recipe trains on, with normalisations fitted on training pixels.

    A percentile target normalisation gets the recipe's `target_headroom`.
    """
    from vsgan.datasets.real import build

    if is_own_data(recipe.dataset):
        args = dict(recipe.dataset_args)
        args.setdefault("min_val_size", recipe.patch_size or 0)
        args.setdefault("seed", recipe.seed)
        try:
            spec = own_data_spec(recipe.dataset, **args, log=log)
        except TypeError as error:
            raise InputError(
                f"dataset {recipe.dataset!r}: bad arguments {args} ({error})."
            ) from None
    else:
        spec = build(recipe.dataset, data, **recipe.dataset_args)
    norm = spec.target_norm
    if norm.method == "percentile" and not norm.per_field and norm.offset is None:
        norm.headroom = float(recipe.target_headroom)
    return spec.fit_normalization()


def _reorder_like(spec, model) -> None:
    """Puts the spec's channels in `model`'s order, matched by name; its normalisation too."""
    from vsgan.io.channels import match_channels

    for role, names, wanted in (
        ("inputs", spec.input_names, model.input_channels),
        ("targets", spec.target_names, model.output_channels),
    ):
        where = f"--from: the data's {role}"
        idx = match_channels(list(wanted), names, exact=True, where=where)
        for field in spec.fields:
            sources = getattr(field, role)
            if len(sources) == len(names):
                setattr(field, role, [sources[i] for i in idx])
            elif len(sources) == 1:
                src = sources[0]
                chosen = src.channels if src.channels is not None else list(range(len(names)))
                src.channels = [chosen[i] for i in idx]
            elif idx != list(range(len(names))):
                raise InputError(f"{where}: cannot reorder field {field.name!r}'s files.")
        if role == "inputs":
            spec.input_names = list(wanted)
        else:
            spec.target_names = list(wanted)
    spec.input_norm = model.preprocessor.input
    spec.target_norm = model.preprocessor.target


def pretrained_start(recipe: Recipe, spec) -> Pix2PixHD:
    """Fine-tuning: the model of `recipe.init_from`, channels of `spec` matched to it by name."""
    base = Pix2PixHD.from_preset(recipe.init_from)  # a preset name or a .keras file
    try:
        _reorder_like(spec, base)
    except InputError as error:
        raise InputError(
            f"--from {recipe.init_from}: its channels {base.input_channels} -> "
            f"{base.output_channels} do not match the data's {spec.input_names} -> "
            f"{spec.target_names} ({error}). Fix: name the data's files after the model's "
            "channels, or train from scratch (leave out --from)."
        ) from None
    model = Pix2PixHD.from_config(base.get_config())
    model.set_weights(base.get_weights())
    model.compile(niter=recipe.niter, niter_decay=recipe.niter_decay)
    return model


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
    spec = build_spec(recipe, data, log=print if verbose != 0 else (lambda *a: None))
    base_model = pretrained_start(recipe, spec) if recipe.init_from else None
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
        augment=recipe.augmentation(),
        seed=recipe.seed,
        workers=1 if recipe.deterministic else 2,
    )
    val_ds = make_dataset(spec, "val", recipe.patch_size, recipe.batch_size, seed=recipe.seed)
    val_ds = val_ds.take(recipe.val_batches).cache()
    # A known length (counted once, which fills the cache) spares Keras' misleading "Your
    # input ran out of data" warning at the end of every validation pass.
    n_val = sum(1 for _ in val_ds)
    if n_val == 0:
        raise InputError(
            f"the validation split of {recipe.dataset!r} yields no batch of {recipe.batch_size}."
            " Fix: give more data, or a smaller --batch-size."
        )
    val_ds = val_ds.apply(tf.data.experimental.assert_cardinality(n_val))
    x_show, y_show = next(iter(val_ds))
    with strategy.scope():  # variables and optimizers mirrored across replicas
        model = base_model or build_model(recipe, spec)
    fields_val = _validation_regions(spec)
    # Only now that data and model are known to work is the run folder (re)made: only what
    # vsgan wrote is removed, the user's own files stay.
    if overwrite:
        run.clear()
    run.remove_temporaries()  # left by a run killed while saving (the lock is ours)
    run.record(
        "recipe.json",
        "model.keras",
        "model_best.keras",
        "model_best.keras.json",
        "calibration.json",
        "backup",
        "history.csv",
        "logs",
    )
    (out / "recipe.json").write_text(
        json.dumps({**recipe.get_config(), "data": None if data is None else str(data)}, indent=2)
    )
    if finished:
        for path in (out / "model_best.keras", out / "model_best.keras.json"):
            path.unlink(missing_ok=True)
    schedule = schedules(model)
    callbacks = [
        *schedule,
        SyncSamplerEpoch(train_ds.sampler),
        AtomicBackupAndRestore(backup),
        NanGuard(str(out / "model.keras")),
        AtomicCheckpoint(out / "model.keras"),
        FieldValidation(fields_val, out / "model_best.keras", recipe.val_tile_size),
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(out / "logs"), write_graph=False),
        ImageLogger(str(out / "logs"), x_show.numpy()[:4], y_show.numpy()[:4]),
    ]
    if recipe.snapshots:

        def record(path):  # manifest entries are relative to the run folder
            run.record(os.path.relpath(path, out))

        callbacks.append(Snapshots(out / "snapshots", record=record))
    if recipe.time_limit:
        decay = next((c for c in schedule if isinstance(c, LinearDecay)), None)
        callbacks.append(TimeBudget(recipe.time_limit, decay, recipe.epochs, verbose != 0))
    model.fit(
        distribute_dataset(train_ds, strategy),
        validation_data=distribute_dataset(val_ds, strategy),
        epochs=recipe.epochs,
        callbacks=callbacks,
        shuffle=False,  # the sampler shuffles; Keras would warn that it ignores shuffle=True
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


def _validation_regions(spec, max_regions: int = 16) -> list:
    """(name, raw input, raw target) of each validation field or region, for `FieldValidation`."""
    regions = []
    for field in spec.fields_in("val"):
        x, y = field.read()
        for y0, y1, x0, x1 in field.rects("val", x.shape[:2]):
            regions.append((field.name, x[y0:y1, x0:x1], y[y0:y1, x0:x1]))
    if not regions:
        raise InputError(
            f"{spec.name}: no validation field or region. Fix: give at least two fields, or one "
            "field large enough to split (val_fraction > 0)."
        )
    step = max(1, len(regions) // max_regions)  # thousands of small crops: a fixed sample
    return regions[::step][:max_regions]
