"""Distributed training: `vsgan train --strategy mirrored|multiworker` (tf.distribute).

- "mirrored": `tf.distribute.MirroredStrategy` over one machine's GPUs (all logical CPU
  devices when there is no GPU, as in the tests). Each step splits the recipe's
  `batch_size` (the global batch) across the devices and sums their gradients.
- "multiworker": `tf.distribute.MultiWorkerMirroredStrategy` across machines. Every worker
  runs the same command with the same cluster in `TF_CONFIG` and its own task index:

      TF_CONFIG='{"cluster": {"worker": ["node0:12345", "node1:12345"]},
                  "task": {"type": "worker", "index": 0}}' vsgan train ... --strategy multiworker

  Worker 0 (the chief) writes the run folder; worker i > 0 keeps its own copy of the run
  state in `<run>.worker<i>` (same epochs, same weights), so every worker can resume after a
  crash and none overwrites the chief's files on a shared file system. Keras' `fit` works
  under this strategy only when the dataset yields one packed tensor per example and the
  logs are rank 1 (keras 20585, tensorflow 72388): `distribute_dataset` packs the pairs and
  `Pix2PixHD` splits them by channel count. The data pipeline is sharded by batch
  (`AutoShardPolicy.DATA`): each worker draws the same crops and trains on its share.
- "default" (or None): no strategy, one device.

Gradients are summed over replicas, so `Pix2PixHD.train_step` divides each replica's loss
by the number of replicas; the optimizers are built inside the strategy scope
(`Pix2PixHD.compile`), as MirroredStrategy requires. XLA stays off (it fails under
strategies).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from vsgan.errors import InputError

STRATEGIES = ("default", "mirrored", "multiworker")

__all__ = [
    "STRATEGIES",
    "distribute_dataset",
    "get_strategy",
    "run_dir",
    "strategy_scope",
    "worker_index",
]


def _cluster() -> tuple[dict, dict]:
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise InputError(
            "--strategy multiworker needs TF_CONFIG describing the cluster and this worker. Fix: "
            'export TF_CONFIG=\'{"cluster": {"worker": ["node0:12345", "node1:12345"]}, '
            '"task": {"type": "worker", "index": 0}}\' on node0 (index 1 on node1) and run '
            "the same command on every worker."
        )
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        workers = cluster["worker"]
        index = int(task["index"])
        if task.get("type") not in ("worker", "chief") or not workers:
            raise ValueError("task type must be worker or chief")
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(
            f"TF_CONFIG={text!r} is not a cluster description ({error}). Fix: give JSON "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}.'
        ) from None
    return cluster, {"type": task["type"], "index": index}


def worker_index() -> int:
    """This process's rank among the workers: 0 for the chief (and without a cluster)."""
    if not os.environ.get("TF_CONFIG"):
        return 0
    cluster, task = _cluster()
    if task["type"] == "chief" or "chief" not in cluster:
        return task["index"] if task["type"] == "worker" else 0
    return task["index"] + len(cluster["chief"])


def get_strategy(name: str | None = None):
    """The `tf.distribute.Strategy` for a `--strategy` name ("default" or None: the default one).

    Create it before any other TensorFlow work of the process: MultiWorkerMirroredStrategy
    configures the collective runtime, which must happen first.

    Example:
    >>> get_strategy("default").num_replicas_in_sync
    1
    """
    import tensorflow as tf

    name = "default" if name is None else str(name).lower().replace("-", "").replace("_", "")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy([d.name for d in gpus])
        # CPU devices: reduce through one device. Collective all-reduce keys restart at the
        # same numbers for every strategy of a process, so a second CPU strategy in one
        # process (a notebook, a test session) collides with the first one's collectives.
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(
            cpus, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    if name == "multiworker":
        _cluster()  # a clear error before TensorFlow waits for peers
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise InputError(f"strategy {name!r} is unknown: use one of {', '.join(STRATEGIES)}.")


@contextlib.contextmanager
def strategy_scope(name: str | None = None) -> Iterator:
    """`with strategy_scope("mirrored") as strategy:` build and compile the model inside.

    Yields the strategy (`get_strategy(name)`); inside the block, variables are mirrored.
    """
    strategy = get_strategy(name)
    with strategy.scope():
        yield strategy


def _is_multi_worker(strategy) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def run_dir(out_dir: str | os.PathLike, strategy) -> Path:
    """The folder this worker writes: `out_dir` for the chief, `<out_dir>.worker<i>` otherwise."""
    out = Path(out_dir)
    if not _is_multi_worker(strategy):
        return out
    index = worker_index()
    return out if index == 0 else out.with_name(f"{out.name}.worker{index}")


def distribute_dataset(dataset, strategy):
    """The dataset `fit` needs under `strategy`: (input, target) pairs packed into one tensor
    (input channels first) and sharded by batch across workers; unchanged without workers."""
    if not _is_multi_worker(strategy):
        return dataset
    import tensorflow as tf

    packed = dataset.map(lambda x, y: tf.concat([x, y], axis=-1))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return packed.with_options(options)
