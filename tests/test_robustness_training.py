"""Crash-safe training (issue 7 items 1-2): SIGKILL and resume, atomic backups, NaN guard."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import vsgan
import vsgan.data
import vsgan.models  # registers Pix2PixHD, so keras.models.load_model finds it
from vsgan import cli
from vsgan.errors import VsganError
from vsgan.training.callbacks import (
    AtomicBackupAndRestore,
    NanGuard,
    TrainingDiverged,
    TrainingStateError,
)

TINY_RECIPE = {
    "dataset": "synthetic",
    "dataset_args": {"n_fields": 6, "size": 64},
    "model": {"ngf": 8, "n_downsample": 2, "n_blocks": 1, "ndf": 8, "num_d": 2},
    "patch_size": 32,
    "batch_size": 2,
    "steps_per_epoch": 6,
    "epochs": 4,
    "niter": 2,
    "niter_decay": 2,
    "val_batches": 1,
}


def _train_command(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "vsgan.cli", "train", "--config", str(config)] + [
        "--out",
        str(out),
        "--quiet",
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def _weights(path: Path) -> list[np.ndarray]:
    return [np.asarray(w) for w in keras.models.load_model(path).get_weights()]


def _history_epochs(run: Path) -> list[int]:
    lines = (run / "history.csv").read_text().splitlines()[1:]
    return [int(line.split(",")[0]) for line in lines]


def test_sigkill_mid_epoch_then_rerun_gives_the_uninterrupted_weights(tmp_path):
    config = tmp_path / "recipe.json"
    recipe = {**TINY_RECIPE, "epochs": 3, "niter": 2, "niter_decay": 1, "deterministic": True}
    config.write_text(json.dumps(recipe))

    reference = tmp_path / "reference"
    done = subprocess.run(
        _train_command(config, reference), env=_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]

    run = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_command(config, run),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    committed = run / "backup" / "training_metadata.json"
    deadline = time.monotonic() + 180
    while not committed.exists():
        assert proc.poll() is None, "training ended before its first epoch was backed up"
        assert time.monotonic() < deadline, "no backup after 180 s"
        time.sleep(0.02)
    time.sleep(0.3)  # into the second epoch (about a second each)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = json.loads(committed.read_text())["epoch"]
    assert 1 <= killed_at < recipe["epochs"]

    again = subprocess.run(_train_command(config, run), env=_env(), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert not (run / "backup").exists()  # a finished run removes its backup
    assert not list(run.glob(".tmp-*"))
    epochs = _history_epochs(run)
    assert epochs == sorted(set(epochs)) and epochs[-1] == recipe["epochs"] - 1

    got, want = _weights(run / "model.keras"), _weights(reference / "model.keras")
    assert len(got) == len(want)
    worst = max(float(np.abs(a - b).max()) for a, b in zip(got, want))
    assert worst <= 1e-5, f"resumed weights differ from the uninterrupted run by {worst}"


def test_sampler_epoch_is_what_a_resumed_run_draws():
    """SyncSamplerEpoch sets the epoch: the crops of epoch 2 do not depend on history."""
    from vsgan.datasets import synthetic_cells
    from vsgan.training.callbacks import SyncSamplerEpoch

    spec = synthetic_cells(4, size=64).fit_normalization()
    straight = vsgan.data.make_dataset(spec, patch_size=32, batch_size=2, patches_per_field=2)
    for _ in range(2):
        list(straight)  # epochs 0 and 1
    epoch2 = [x.numpy() for x, _ in straight]

    resumed = vsgan.data.make_dataset(spec, patch_size=32, batch_size=2, patches_per_field=2)
    SyncSamplerEpoch(resumed.sampler).on_epoch_begin(2)
    again = [x.numpy() for x, _ in resumed]
    first = [
        x.numpy()
        for x, _ in vsgan.data.make_dataset(spec, patch_size=32, batch_size=2, patches_per_field=2)
    ]
    assert all(np.array_equal(a, b) for a, b in zip(epoch2, again))
    assert not all(np.array_equal(a, b) for a, b in zip(epoch2, first))


# --------------------------------------------------------------------- atomic backup
def _tiny_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("adam", "mse")
    return model


def test_backup_killed_mid_write_keeps_the_previous_state(tmp_path, monkeypatch):
    model = _tiny_model()
    backup = AtomicBackupAndRestore(tmp_path / "backup")
    backup.set_model(model)
    backup.on_epoch_end(0)
    saved = [w.copy() for w in model.get_weights()]

    def dies_mid_write(path, overwrite=True):
        Path(path).write_bytes(b"\x89HDF half a file")
        raise OSError(28, "No space left on device")

    model.set_weights([w + 1 for w in saved])
    monkeypatch.setattr(model, "save_weights", dies_mid_write)
    with pytest.raises(OSError, match="No space"):
        backup.on_epoch_end(1)
    monkeypatch.undo()

    files = sorted(p.name for p in (tmp_path / "backup").iterdir())
    assert files == ["epoch-000001.weights.h5", "training_metadata.json"]  # no temp file
    restored = _tiny_model()
    again = AtomicBackupAndRestore(tmp_path / "backup")
    again.set_model(restored)
    again.on_train_begin()
    assert restored._initial_epoch == 1
    for a, b in zip(restored.get_weights(), saved):
        np.testing.assert_array_equal(a, b)


def test_uncommitted_weights_are_ignored_and_a_damaged_backup_is_named(tmp_path):
    folder = tmp_path / "backup"
    folder.mkdir()
    (folder / "epoch-000003.weights.h5").write_bytes(b"killed before the metadata")
    model = _tiny_model()
    before = [w.copy() for w in model.get_weights()]
    fresh = AtomicBackupAndRestore(folder)
    fresh.set_model(model)
    fresh.on_train_begin()  # nothing committed: a fresh start
    assert getattr(model, "_initial_epoch", None) is None
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)

    (folder / "training_metadata.json").write_text(
        json.dumps({"epoch": 3, "batch": 0, "weights": "epoch-000003.weights.h5"})
    )
    with pytest.raises(TrainingStateError, match=f"delete {folder}"):
        fresh.on_train_begin()


# ------------------------------------------------------------------------- NaN guard
def test_nan_guard_names_the_step_and_value():
    guard = NanGuard("run/model.keras")
    guard.set_model(_tiny_model())
    guard.on_epoch_begin(4)
    guard.on_train_batch_end(0, {"loss": 1.0})
    with pytest.raises(TrainingDiverged, match=r"epoch 5, step 8.*run/model\.keras") as info:
        guard.on_train_batch_end(7, {"loss": float("inf"), "d_loss": 0.5})
    assert isinstance(info.value, VsganError)
    assert "inf" in str(info.value) and "d_loss" not in str(info.value)
    assert guard.model.stop_training


def test_nan_batch_stops_vsgan_train_and_keeps_the_last_good_checkpoint(
    tmp_path, monkeypatch, capsys
):
    """A batch of NaN at epoch 2, step 3: one line, exit 2, epoch 1's checkpoint intact."""
    steps, bad = TINY_RECIPE["steps_per_epoch"], TINY_RECIPE["steps_per_epoch"] + 2
    produced = {"n": 0}
    real_make_dataset = vsgan.data.make_dataset

    def poison(x, y):
        n = produced["n"]
        produced["n"] += 1
        return (x * np.float32("nan") if n == bad else x), y

    def poisoned(spec, split="train", *args, **kwargs):
        ds = real_make_dataset(spec, split, *args, **kwargs)
        if split != "train":
            return ds
        sampler = ds.sampler

        def wrap(x, y):
            x2, y2 = tf.py_function(poison, [x, y], [tf.float32, tf.float32])
            return tf.ensure_shape(x2, x.shape), tf.ensure_shape(y2, y.shape)

        ds = ds.map(wrap)
        ds.sampler = sampler
        return ds

    monkeypatch.setattr(vsgan.data, "make_dataset", poisoned)
    config = tmp_path / "recipe.json"
    config.write_text(json.dumps({**TINY_RECIPE, "epochs": 3, "niter": 3, "niter_decay": 0}))
    run = tmp_path / "run"
    code = cli.main(["train", "--config", str(config), "--out", str(run), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"epoch 2, step {bad - steps + 1}" in err and "nan" in err
    assert str(run / "model.keras") in err and "learning rate" in err

    model = vsgan.load_pretrained(run / "model.keras")  # loadable, and finite
    assert all(np.isfinite(w).all() for w in model.get_weights())
    # It is the state after epoch 1: the committed backup holds the same weights.
    meta = json.loads((run / "backup" / "training_metadata.json").read_text())
    assert meta["epoch"] == 1
    backed_up = keras.models.load_model(run / "model.keras")
    backed_up.load_weights(run / "backup" / meta["weights"])
    for a, b in zip(model.generator.get_weights(), backed_up.generator.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not list(run.glob(".tmp-*"))
