"""The examples run as a user would run them: custom-data training and multi-worker training."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
from conftest import REPO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_train_custom_data_example_trains_saves_and_stains(tmp_path):
    out = tmp_path / "custom.keras"
    run = subprocess.run(
        [sys.executable, "examples/train_custom_data.py", "--epochs", "1", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert out.is_file()
    assert "held-out field stained: mean (128, 128, 2), std (128, 128, 2)" in run.stdout


def test_multi_worker_training_with_two_local_workers(tmp_path):
    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    procs = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(config)}
        procs.append(
            subprocess.Popen(
                [sys.executable, "examples/multi_worker.py", str(tmp_path)],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:  # bounded: never leave a worker waiting for its peer
            p.kill()
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr[-2000:]
        assert "g_loss" in stdout
    w0 = np.load(tmp_path / "weights_worker0.npy")
    w1 = np.load(tmp_path / "weights_worker1.npy")
    assert np.isfinite(w0).all()
    np.testing.assert_array_equal(w0, w1)  # replicas stay in sync
