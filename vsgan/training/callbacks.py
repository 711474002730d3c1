"""Callbacks around `Pix2PixHD.fit`: pix2pixHD's schedules and the crash-safe ones.

The schedules are explicit: `schedules(model)` builds them from the model's `compile`
settings (`niter`, `niter_decay`, `niter_fix_global`); `vsgan train` adds them, and a
`fit` user passes them, so the learning rate follows the original recipe:

    model.fit(dataset, epochs=200, callbacks=vsgan.training.schedules(model))
"""

from __future__ import annotations

import json
import math
import os

import keras
import numpy as np

from vsgan.errors import InputError, TrainingDiverged, VsganError
from vsgan.io.files import atomic_path

__all__ = ["TrainingDiverged"]  # defined in vsgan.errors, so `Pix2PixHD.fit` can raise it


class LinearDecay(keras.callbacks.Callback):
    """Constant learning rate for `niter` epochs, then linear decay to 0 over `niter_decay`.

    Applied to both the generator's and the discriminator's optimizer at the start of
    every epoch, from the absolute epoch index, so resumed runs land on the same rate.

    Args:
        niter: epochs at the initial learning rate.
        niter_decay: epochs of linear decay (0 keeps the rate constant).
    """

    def __init__(self, niter: int = 100, niter_decay: int = 100):
        super().__init__()
        self.niter, self.niter_decay = int(niter), int(niter_decay)

    def factor(self, epoch: int) -> float:
        """The multiplier of the initial learning rate during `epoch` (0-based)."""
        if self.niter_decay <= 0 or epoch < self.niter:
            return 1.0
        return max(0.0, 1.0 - (epoch - self.niter) / self.niter_decay)

    def on_epoch_begin(self, epoch, logs=None):
        model = self.model
        for optimizer, base in (
            (model.g_optimizer, model.base_learning_rates[0]),
            (model.d_optimizer, model.base_learning_rates[1]),
        ):
            if base is not None:
                optimizer.learning_rate = base * self.factor(epoch)


def schedules(model) -> list[keras.callbacks.Callback]:
    """pix2pixHD's learning-rate decay (and local-enhancer freezing) for a compiled model.

    Args:
        model: a compiled `vsgan.Pix2PixHD`.

    Returns:
        `[LinearDecay(niter, niter_decay)]`, plus `EnhancerSchedule(niter_fix_global)` for a
        local enhancer with a frozen-G1 phase.
    """
    if getattr(model, "g_optimizer", None) is None:
        raise VsganError("schedules(model) needs a compiled model: call model.compile() first.")
    out: list[keras.callbacks.Callback] = [LinearDecay(model.niter, model.niter_decay)]
    if model.n_local_enhancers and not model.split_outputs and model.niter_fix_global:
        out.append(EnhancerSchedule(model.niter_fix_global))
    return out


class EnhancerSchedule(keras.callbacks.Callback):
    """Freezes the global generator G1 for the first `niter_fix_global` epochs.

    pix2pixHD trains G1 alone first (a `Pix2PixHD` with `n_local_enhancers=0` and
    twice the filters, at half resolution), copies it in with
    `Pix2PixHD.load_global_weights`, trains the local enhancers with G1 frozen, then
    everything jointly. Changing `trainable` needs a new train function, so this
    callback rebuilds it when the phase changes.

    Args:
        niter_fix_global: epochs during which G1 stays frozen.
    """

    def __init__(self, niter_fix_global: int):
        super().__init__()
        self.niter_fix_global = int(niter_fix_global)

    def on_epoch_begin(self, epoch, logs=None):
        frozen = epoch < self.niter_fix_global
        layers = self.model.generator.global_layers()
        if any(layer.trainable == frozen for layer in layers):
            for layer in layers:
                layer.trainable = not frozen
            self.model.make_train_function(force=True)


class SyncSamplerEpoch(keras.callbacks.Callback):
    """Tells a `vsgan.data.PatchSampler` which epoch starts, so resumed runs draw the same crops.

    Args:
        sampler: the sampler behind the training dataset (`dataset.sampler`).
    """

    def __init__(self, sampler):
        super().__init__()
        self.sampler = sampler

    def on_epoch_begin(self, epoch, logs=None):
        self.sampler.epoch = epoch


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves the whole model (`.keras`) after every epoch under a temporary name, then renames.

    A crash or full disk during the write leaves the previous checkpoint intact.

    Args:
        path: the `.keras` file to keep up to date.
    """

    def __init__(self, path):
        super().__init__()
        self.path = os.fspath(path)

    def on_epoch_end(self, epoch, logs=None):
        atomic_save(self.model, self.path)


class Snapshots(keras.callbacks.Callback):
    """Keeps the generator's weights of every epoch: ``folder/epoch_NNN.weights.h5``.

    Checkpoints along the learning-rate decay make a snapshot ensemble (several models for
    the price of one run; `benchmarks/uncertainty_candidates.py` compares its spread with the
    other uncertainties). Generator only: an ensemble stains, it does not train on.

    Args:
        folder: where the files go (created).
        record: called with each file's path before it is written (a run folder's
            manifest, so `--overwrite` removes these files and nothing a user put beside them).
    """

    def __init__(self, folder, record=None):
        super().__init__()
        self.folder = os.fspath(folder)
        self.record = record

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.folder, exist_ok=True)
        path = os.path.join(self.folder, f"epoch_{epoch + 1:03d}.weights.h5")
        if self.record is not None:
            self.record(path)
        with atomic_path(path, overwrite=True) as tmp:
            self.model.generator.save_weights(tmp)


def average_snapshots(generator, paths) -> None:
    """Sets `generator`'s weights to the mean of the snapshot files `paths` (weight averaging).

    Averaging the weights of the epochs along the learning-rate decay gives one model that
    stains like the snapshot ensemble's mean at the cost of one pass (the generator has no
    batch statistics to re-estimate: its norms are per-instance).

    Args:
        generator: the model's generator (`model.generator`), built.
        paths: `Snapshots` files of that architecture.
    """
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise InputError("no snapshot files to average. Fix: train with snapshots: true.")
    total = None
    for path in paths:
        generator.load_weights(path)
        weights = [np.asarray(w, np.float64) for w in generator.get_weights()]
        total = weights if total is None else [t + w for t, w in zip(total, weights)]
    generator.set_weights([t / len(paths) for t in total])


class NanGuard(keras.callbacks.Callback):
    """Stops training at the first NaN or Inf loss, naming the step; checkpoints stay intact."""

    stops_on_nan = True  # `Pix2PixHD.fit` adds its own guard only without one

    def __init__(self, checkpoint: str | None = None):
        super().__init__()
        self.checkpoint = checkpoint
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        bad = {k: v for k, v in (logs or {}).items() if not math.isfinite(float(v))}
        if bad:
            self.model.stop_training = True
            where = f" The last good checkpoint is {self.checkpoint}." if self.checkpoint else ""
            raise TrainingDiverged(
                f"Loss became {bad} at epoch {self.epoch + 1}, step {batch + 1}: training "
                f"stopped.{where} Fix: lower the learning rate, check the data for NaN, or "
                "use float32."
            )


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose backup survives a kill at any instant.

    Keras writes the weights in place and then the epoch number, so a kill during the
    write leaves a truncated file (the restart fails) and a kill between the two resumes
    the wrong epoch. Here each backup is written to a new file, renamed into place, and
    only then committed by atomically replacing `training_metadata.json`, which names
    the weights file it belongs to; older weights files are removed after the commit.

    Args:
        backup_dir: the folder of the backup (used by nothing else).
    """

    def __init__(self, backup_dir: str | os.PathLike):
        super().__init__(os.fspath(backup_dir), save_freq="epoch", double_checkpoint=False)

    def _metadata(self) -> dict | None:
        try:
            with open(self._training_metadata_path) as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise TrainingStateError(
                f"{self._training_metadata_path}: unreadable backup metadata ({error}). Fix: "
                f"delete {self.backup_dir} to start the run again from its first epoch."
            ) from None

    def _load_model(self):
        meta = self._metadata()
        if meta is None:  # nothing committed yet: a fresh start
            return
        weights = os.path.join(self.backup_dir, meta.get("weights", "latest.weights.h5"))
        try:
            self.model.load_weights(weights)
        except Exception as error:
            raise TrainingStateError(
                f"{weights}: cannot restore the training state ({type(error).__name__}: "
                f"{error}). Fix: delete {self.backup_dir} to start the run again, or train "
                "with the recipe the run was started with."
            ) from None
        self.model._initial_epoch = int(meta["epoch"])

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch-{self._current_epoch:06d}.weights.h5"
        with atomic_path(os.path.join(self.backup_dir, name)) as tmp:
            self.model.save_weights(tmp, overwrite=True)
        meta = {"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights": name}
        with atomic_path(self._training_metadata_path) as tmp:  # the commit point
            tmp.write_text(json.dumps(meta))
        for old in os.listdir(self.backup_dir):
            if old != name and (old.endswith(".weights.h5") or old.startswith(".tmp-")):
                os.remove(os.path.join(self.backup_dir, old))


class TrainingStateError(VsganError, OSError):
    """A run folder's backup cannot be restored."""


def enable_determinism(seed: int) -> None:
    """Seeds every generator and makes TensorFlow ops deterministic (slower on GPU).

    With this, a run with the same seed, recipe and machine gives bit-identical weights,
    also when it was killed and resumed from its backup.
    """
    keras.utils.set_random_seed(seed)
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


def atomic_save(model: keras.Model, path: str | os.PathLike) -> None:
    """`model.save(path)`, atomically (see `vsgan.io.files.atomic_path`)."""
    with atomic_path(path) as tmp:
        model.save(tmp)


class FieldValidation(keras.callbacks.Callback):
    """Stains the validation fields (or regions) whole each epoch and scores them.

    The fields go through the same tiled `vsgan.stain` as `vsgan predict`, and are scored in
    stain units as `vsgan evaluate` scores them, so the number means what evaluation means
    (a mean over random crops, many of them background, does not). Adds
    `val_field_pearson_r`, `val_field_ssim` and `val_field_psnr` (means over fields and
    channels) to the epoch logs, so `history.csv` and TensorBoard get them, and renames
    Keras' crop-level validation metrics to `val_patch_*`. The model of the best epoch by
    field Pearson r is kept in `best_path` (atomically, with `<best_path>.json` saying which
    epoch), beside the last one.

    Place it before `CSVLogger` and `TensorBoard` in the callback list.

    Args:
        regions: ``[(name, raw input (H, W, C_in), raw target (H, W, C_out)), ...]``.
        best_path: the `.keras` file of the best epoch (None: not kept).
        tile_size: tile side for `stain` (default: `stain`'s).
    """

    PATCH_METRICS = ("pearson_r", "ssim", "psnr")

    def __init__(self, regions, best_path=None, tile_size: int | None = None):
        super().__init__()
        if not regions:
            raise VsganError("FieldValidation needs at least one validation field or region.")
        self.regions = list(regions)
        self.best_path = None if best_path is None else os.fspath(best_path)
        self.tile_size = tile_size
        self.best = -math.inf
        if self.best_path and os.path.exists(self.best_path + ".json"):
            try:  # a resumed run keeps the best of its earlier epochs
                with open(self.best_path + ".json") as f:
                    self.best = float(json.load(f)["val_field_pearson_r"])
            except (OSError, ValueError, KeyError, TypeError):
                pass

    def scores(self) -> dict[str, float]:
        """Field-level Pearson r, SSIM and PSNR of the current model (means over fields)."""
        import numpy as np

        from vsgan.evaluation import metrics  # numpy-only metrics; the evaluation's convention
        from vsgan.inference.stain import stain

        rows = []
        for _, x, y in self.regions:
            pred = stain(self.model, x, tile_size=self.tile_size).mean
            y = np.asarray(y, np.float32)
            rows.append((metrics.pearson_r(pred, y), metrics.ssim(pred, y), metrics.psnr(pred, y)))
        r, s, p = (float(np.nanmean(v)) for v in zip(*rows))
        return {"val_field_pearson_r": r, "val_field_ssim": s, "val_field_psnr": p}

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        for name in self.PATCH_METRICS:
            if f"val_{name}" in logs:
                logs[f"val_patch_{name}"] = logs.pop(f"val_{name}")
        found = self.scores()
        logs.update(found)
        r = found["val_field_pearson_r"]
        if self.best_path and math.isfinite(r) and r > self.best:
            self.best = r
            atomic_save(self.model, self.best_path)
            with atomic_path(self.best_path + ".json") as tmp:
                tmp.write_text(json.dumps({"epoch": epoch + 1, **found}, indent=2))


class TimeBudget(keras.callbacks.Callback):
    """Ends training at an epoch boundary within `seconds`, the decay fitted into the budget.

    After each epoch the mean epoch time (the first step and then the first epoch, which
    trace the graphs, are left out as soon as there are others) says how many epochs fit
    into the budget; the `LinearDecay` is re-planned to run half of them at the initial rate
    and decay to 0 over the rest, and
    training stops after the last epoch that fits, so the run ends with a decayed, saved
    model. Put it last in the callback list, so its clock includes checkpoints and
    validation.

    Args:
        seconds: the budget of this `fit` call.
        decay: the run's `LinearDecay` (re-planned in place).
        max_epochs: never plan more epochs than this.
        verbose: print the plan when it changes.
    """

    def __init__(
        self,
        seconds: float,
        decay: LinearDecay | None = None,
        max_epochs: int = 10**6,
        verbose: bool = True,
    ):
        super().__init__()
        self.verbose = verbose
        if not seconds > 0:
            raise VsganError(f"time limit {seconds!r}: give a positive duration, e.g. 45m.")
        self.seconds, self.decay, self.max_epochs = float(seconds), decay, int(max_epochs)
        self.planned: int | None = None

    def on_train_begin(self, logs=None):
        import time

        self.start = time.monotonic()
        self.first_epoch = None
        self.ends: list[float] = []
        self.first_batch_end, self.batches = None, 0

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch = epoch
        self.first_batch_end, self.batches = None, 0

    def on_train_batch_end(self, batch, logs=None):
        import time

        if self.first_batch_end is None:
            self.first_batch_end = time.monotonic()
        self.batches = batch + 1

    def on_epoch_end(self, epoch, logs=None):
        import time

        now = time.monotonic()
        self.ends.append(now)
        times = [b - a for a, b in zip([self.start, *self.ends[:-1]], self.ends)]
        if len(times) > 1:
            per = sum(times[1:]) / len(times[1:])
        elif self.first_batch_end is not None and self.batches > 1:
            # The first step traces the graphs (often longer than many steps): leave it out.
            per = (now - self.first_batch_end) * self.batches / (self.batches - 1)
        else:
            per = times[0]
        left = self.seconds - (now - self.start)
        total = min(epoch + 1 + max(0, int(left // per)), self.max_epochs)
        if total != self.planned and self.verbose:
            print(
                f"time limit {self.seconds / 60:.0f} min: {total} epochs fit "
                f"({per:.0f} s each); the learning rate decays to 0 by epoch {total}."
            )
        self.planned = total
        if self.decay is not None:
            self.decay.niter = total // 2
            self.decay.niter_decay = total - self.decay.niter
        if epoch + 1 >= total:
            self.model.stop_training = True


def parse_duration(text: str | float | int) -> float:
    """Seconds of ``"45m"``, ``"1h30m"``, ``"90s"``, ``"2h"`` or a number of seconds.

    Example:
    >>> parse_duration("1h30m"), parse_duration("45m"), parse_duration(20)
    (5400.0, 2700.0, 20.0)
    """
    import re

    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        number = r"(\d+(?:\.\d+)?)"
        pattern = rf"\s*(?:{number}h)?\s*(?:{number}m)?\s*(?:{number}s?)?\s*"
        parts = re.fullmatch(pattern, str(text).lower())
        if not parts or not any(parts.groups()):
            raise VsganError(
                f"time limit {text!r} is not a duration. Fix: write e.g. 45m, 1h30m, 2h or 600s."
            )
        h, m, s = (float(g) if g else 0.0 for g in parts.groups())
        seconds = 3600 * h + 60 * m + s
    if not seconds > 0:
        raise VsganError(f"time limit {text!r}: give a positive duration, e.g. 45m.")
    return seconds
