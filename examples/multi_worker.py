"""Train Pix2PixHD on several machines with `tf.distribute.MultiWorkerMirroredStrategy`.

Start one process per worker with the same cluster in TF_CONFIG and its own index, e.g.
on two hosts (or twice on one host, for a test):

    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                "task": {"type": "worker", "index": 0}}' python examples/multi_worker.py OUT
    ... same with "index": 1 on the second host.

Two things make Keras' `fit` work under this strategy (keras 20585, tensorflow 72388):
the dataset yields each (input, target) pair packed into ONE tensor (Pix2PixHD splits it
by channel count), and the global batch is split across workers by the strategy. Only
worker 0 (the chief) writes the model. No XLA under strategies.
"""

import json
import os
import sys

import keras  # noqa: E402
import numpy as np
import tensorflow as tf  # noqa: E402

import vsgan  # noqa: F401  (sets the Keras backend)


def main(out_dir: str, steps: int = 4, global_batch: int = 4) -> None:
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    keras.utils.set_random_seed(0)  # same initial weights on every worker
    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps * global_batch, 32, 32, 1)).astype("float32")
    y = np.tanh(x + np.roll(x, 1, axis=1)).astype("float32")
    packed = np.concatenate([x, y], axis=-1)  # one tensor per example
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = tf.data.Dataset.from_tensor_slices(packed).batch(global_batch).with_options(options)

    with strategy.scope():
        model = vsgan.Pix2PixHD(1, 1, ngf=8, n_downsample=2, n_blocks=1, ndf=8, num_d=2)
        model.compile()
    history = model.fit(dataset, epochs=1, verbose=0)
    print(f"worker {task['index']}: g_loss {history.history['g_loss']}", flush=True)
    os.makedirs(out_dir, exist_ok=True)
    # Every worker saves (collective ops need all of them), the chief's copy is the one kept.
    np.save(
        os.path.join(out_dir, f"weights_worker{task['index']}.npy"),
        np.concatenate([w.ravel() for w in model.get_weights()]),
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "multi_worker_out")
