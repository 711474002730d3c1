"""Training recipes: dataset + architecture + schedule, and `train`, which runs one into a folder.

A run folder holds everything a run made and needs to go on after a crash:

    run/
      recipe.json      the recipe as run (with the data folder)
      model.keras      the whole model after the last finished epoch (written atomically)
      backup/          Keras BackupAndRestore state: a restarted `train` resumes from here
      history.csv      one row of losses and validation metrics per epoch
      logs/            TensorBoard scalars and input / target / prediction images per epoch

Running the same command again resumes; a finished run is never overwritten without
`overwrite=True`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from vsgan.errors import InputError, VsganError
from vsgan.models import Pix2PixHD
from vsgan.training import AtomicCheckpoint, NanGuard, SyncSamplerEpoch


@dataclasses.dataclass
class Recipe:
    """How to train one model.

    Args:
        dataset: "isl-condition-b", "mlcp-jurkat", "a549-vscyto2d", "synthetic" or a path to
            a `PairedDataset` JSON spec.
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
        precision: "float32" or "mixed_bfloat16".
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
    precision: str = "float32"

    def get_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Recipe:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(config) - known
        if unknown:
            raise InputError(f"unknown recipe keys {sorted(unknown)}; known: {sorted(known)}.")
        return cls(**config)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recipe:
        """Reads a recipe from a JSON or YAML file."""
        text = Path(path).read_text()
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            config = yaml.safe_load(text)
        else:
            config = json.loads(text)
        return cls.from_config(config)


# Compact configurations that train on 2 CPU cores within hours (see weights/*.md).
RECIPES: dict[str, Recipe] = {
    "isl-nuclei": Recipe(
        dataset="isl-condition-b",
        dataset_args={"targets": ["dapi"]},
        model=dict(ngf=16, n_downsample=3, n_blocks=4, ndf=16, num_d=2, dropout=0.2, lambda_l1=10),
        patch_size=256,
        batch_size=4,
        steps_per_epoch=100,
        epochs=16,
        niter=8,
        niter_decay=8,
    ),
    # Same generator and budget on L1 alone: what the GAN adds (weights/*.md compare them).
    "isl-nuclei-l1": Recipe(
        dataset="isl-condition-b",
        dataset_args={"targets": ["dapi"]},
        model=dict(ngf=16, n_downsample=3, n_blocks=4, lambda_gan=0, lambda_feat=0, lambda_l1=1),
        patch_size=256,
        batch_size=4,
        steps_per_epoch=100,
        epochs=16,
        niter=8,
        niter_decay=8,
    ),
    "jurkat-dna": Recipe(
        dataset="mlcp-jurkat",
        model=dict(ngf=16, n_downsample=2, n_blocks=3, ndf=16, num_d=2, dropout=0.2, lambda_l1=10),
        patch_size=None,
        batch_size=32,
        steps_per_epoch=100,
        epochs=10,
        niter=5,
        niter_decay=5,
        foreground_weighted=False,
    ),
    # The seed's A549 configuration (REFERENCE section 3), for a machine with a GPU.
    "a549": Recipe(
        dataset="a549-vscyto2d",
        model=dict(ngf=64, n_downsample=4, n_blocks=9, ndf=32, num_d=2, dropout=0.2),
        patch_size=512,
        batch_size=4,
        steps_per_epoch=500,
        epochs=200,
        niter=100,
        niter_decay=100,
        foreground_weighted=False,
    ),
}


def get_recipe(name_or_path: str) -> Recipe:
    """A registered recipe by name, or one read from a JSON/YAML file."""
    if name_or_path in RECIPES:
        return dataclasses.replace(RECIPES[name_or_path])
    if os.path.isfile(name_or_path):
        return Recipe.load(name_or_path)
    raise InputError(
        f"unknown recipe {name_or_path!r}: use one of {sorted(RECIPES)} or a JSON/YAML file."
    )


def build_spec(recipe: Recipe, data: str | os.PathLike | None = None):
    """The `PairedDataset` a recipe trains on, with normalisations fitted on training pixels."""
    from vsgan import datasets
    from vsgan.data import PairedDataset

    name = recipe.dataset
    args = dict(recipe.dataset_args)
    if name == "isl-condition-b":
        spec = datasets.isl_condition_b(data, **args)
    elif name == "mlcp-jurkat":
        spec = datasets.mlcp_jurkat(data, **args)
    elif name == "a549-vscyto2d":
        if data is None:
            raise InputError("the a549 recipe needs --data: the VSCyto2D training .zarr store.")
        spec = datasets.a549_vscyto2d(data, **args)
    elif name == "synthetic":
        spec = datasets.synthetic_cells(**{"n_fields": 8, "size": 128, **args})
    elif os.path.isfile(name):
        spec = PairedDataset.load(name)
    else:
        raise InputError(f"unknown dataset {name!r} in the recipe.")
    return spec.fit_normalization()


def build_model(recipe: Recipe, spec) -> Pix2PixHD:
    """A compiled `Pix2PixHD` for a recipe and data spec, normalisation stored in its config."""
    model = Pix2PixHD(
        in_channels=spec.in_channels,
        out_channels=spec.out_channels,
        input_channels=spec.input_names,
        output_channels=spec.target_names,
        normalization={
            "input": spec.input_norm.get_config(),
            "target": spec.target_norm.get_config(),
        },
        **recipe.model,
    )
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
    verbose: int | str = "auto",
) -> Pix2PixHD:
    """Trains a recipe into `out_dir`, resuming from `out_dir/backup` if a run was cut short.

    Args:
        recipe: what to train.
        out_dir: the run folder (see the module docstring).
        data: the dataset folder (or store); default: `$VSGAN_DATA` / the Keras cache.
        overwrite: start afresh even if `out_dir` holds a finished run.
        verbose: Keras progress-bar setting.

    Returns:
        The trained model (also in `out_dir/model.keras`).
    """
    from vsgan.data import make_dataset

    out = Path(out_dir)
    backup = out / "backup"
    finished = (out / "model.keras").exists() and not backup.exists()
    if finished and not overwrite:
        raise VsganError(
            f"{out} already holds a finished run: pass overwrite=True (--overwrite) to "
            "train again, or choose another output folder."
        )
    if finished:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(
        json.dumps({**recipe.get_config(), "data": None if data is None else str(data)}, indent=2)
    )
    keras.mixed_precision.set_global_policy(recipe.precision)
    keras.utils.set_random_seed(recipe.seed)
    spec = build_spec(recipe, data)
    n_train = max(1, spec.num_fields("train"))
    per_field = -(-recipe.steps_per_epoch * recipe.batch_size // n_train)
    train_ds = make_dataset(
        spec,
        "train",
        recipe.patch_size,
        recipe.batch_size,
        patches_per_field=per_field if recipe.patch_size else None,
        foreground_weighted=recipe.foreground_weighted,
        seed=recipe.seed,
    )
    val_ds = make_dataset(spec, "val", recipe.patch_size, recipe.batch_size, seed=recipe.seed)
    val_ds = val_ds.take(recipe.val_batches).cache()
    x_show, y_show = next(iter(val_ds))
    model = build_model(recipe, spec)
    callbacks = [
        SyncSamplerEpoch(train_ds.sampler),
        keras.callbacks.BackupAndRestore(str(backup)),
        NanGuard(str(out / "model.keras")),
        AtomicCheckpoint(out / "model.keras"),
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(out / "logs"), write_graph=False),
        ImageLogger(str(out / "logs"), x_show.numpy()[:4], y_show.numpy()[:4]),
    ]
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=recipe.epochs,
        callbacks=callbacks,
        verbose=verbose,
    )
    return model
