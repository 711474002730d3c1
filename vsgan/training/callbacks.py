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

from vsgan.errors import TrainingDiverged, VsganError
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
