"""`vsgan train --strategy mirrored|multiworker`: 2 logical CPUs, 2 local workers."""

import csv
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import vsgan
from conftest import REPO, TINY
from vsgan.errors import InputError
from vsgan.training.distribute import get_strategy, run_dir, worker_index
from vsgan.training.recipes import Recipe, train

RECIPE = {
    "dataset": "synthetic",
    "dataset_args": {"n_fields": 4, "size": 64},
    "model": {**TINY, "num_d": 1},
    "patch_size": 32,
    "batch_size": 4,
    "steps_per_epoch": 2,
    "epochs": 1,
    "niter": 1,
    "niter_decay": 0,
    "val_batches": 1,
    "precision": "float32",
}


def _history(run) -> list[dict[str, float]]:
    with open(run / "history.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_mirrored_strategy_trains_a_recipe_on_two_devices(tmp_path):
    model = train(Recipe.from_config(RECIPE), tmp_path / "run", strategy="mirrored", verbose=0)
    assert model.distribute_strategy.num_replicas_in_sync == 2  # conftest's two logical CPUs
    (row,) = _history(tmp_path / "run")
    assert np.isfinite(list(row.values())).all() and row["g_loss"] > 0
    saved = vsgan.load_pretrained(tmp_path / "run" / "model.keras")
    for a, b in zip(saved.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_strategy_names_and_cluster_errors(monkeypatch, tmp_path):
    assert get_strategy("default").num_replicas_in_sync == 1
    with pytest.raises(InputError, match="unknown"):
        get_strategy("tpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(InputError, match="needs TF_CONFIG.*Fix"):
        get_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(InputError, match="not a cluster description"):
        get_strategy("multiworker")
    cluster = {"worker": ["a:1", "b:1", "c:1"]}
    task = {"type": "worker", "index": 2}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    assert worker_index() == 2
    assert run_dir(tmp_path / "run", get_strategy("default")) == tmp_path / "run"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_train_multiworker_with_two_local_workers(tmp_path):
    config = tmp_path / "recipe.json"
    config.write_text(json.dumps(RECIPE))
    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "PYTHONPATH": str(REPO)}
        command = ["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "vsgan.cli", *command, "--strategy", "multiworker"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        outputs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:  # bounded: never leave a worker waiting for its peer
            p.kill()
    for p, (_, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr[-3000:]
    chief, other = tmp_path / "run", tmp_path / "run.worker1"
    # The chief writes the run folder, worker 1 its own copy; both hold the same model.
    m0 = vsgan.load_pretrained(chief / "model.keras")
    m1 = vsgan.load_pretrained(other / "model.keras")
    for a, b in zip(m0.get_weights(), m1.get_weights()):
        assert np.isfinite(a).all()
        np.testing.assert_array_equal(a, b)  # replicas stay in sync
    h0, h1 = _history(chief), _history(other)
    assert len(h0) == 1 and h0 == h1  # logs are reduced over workers
    assert np.isfinite(list(h0[0].values())).all()
