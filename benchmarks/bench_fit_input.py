"""Does the input pipeline slow the training step itself? (found while retraining the presets)

Times `Pix2PixHD.fit` steps of the isl-nuclei-sized model (ngf 16, 3 downsamplings, 6 blocks,
13 -> 1 channels, 256 x 256, batch 4, float32) on the same in-memory batch, in fresh
processes that differ only in what ran before the timed `fit`:

    plain      nothing
    generator  one element drawn from a trivial `tf.data.Dataset.from_generator`
               (the kind of dataset `vsgan.data.make_dataset` built around its PatchSampler
               until it moved to `tf.numpy_function` calls)
    pipeline   one batch drawn from `vsgan.data.make_dataset` (synthetic cells)

The timed steps never touch that dataset, so any difference is a process-wide effect of
the dataset on TensorFlow's CPU kernels, not input-pipeline latency.

    python benchmarks/bench_fit_input.py [--steps 8] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

CHILD = r"""
import os, time
import numpy as np
import tensorflow as tf
from vsgan.models import Pix2PixHD

model = Pix2PixHD(in_channels=13, out_channels=1, ngf=16, n_downsample=3, n_blocks=6, ndf=16,
                  num_d=2, dropout=0.2, lambda_l1=50)
model.compile(niter=10, niter_decay=10)
if os.environ["MODE"] == "generator":
    g = tf.data.Dataset.from_generator(lambda: iter(range(100)),
                                       output_signature=tf.TensorSpec((), tf.int64))
    next(iter(g))
if os.environ["MODE"] == "pipeline":
    from vsgan.data import make_dataset
    from vsgan.datasets import synthetic_cells
    next(iter(make_dataset(synthetic_cells(4, size=64), patch_size=32, batch_size=2)))
rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, (4, 256, 256, 13)).astype("float32")
y = rng.uniform(-1, 1, (4, 256, 256, 1)).astype("float32")
ds = tf.data.Dataset.from_tensors((x, y)).repeat()
model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)
t = time.perf_counter()
model.fit(ds, steps_per_epoch=int(os.environ["STEPS"]), epochs=1, verbose=0)
print((time.perf_counter() - t) / int(os.environ["STEPS"]))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"plain": [], "generator": [], "pipeline": []}
    for _ in range(args.repeats):
        for mode in times:  # alternated, so load changes hit both alike
            env = {**os.environ, "MODE": mode, "STEPS": str(args.steps)}
            env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            out = subprocess.run(
                [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True
            )
            times[mode].append(float(out.stdout.strip().splitlines()[-1]))
            print(f"{mode:<10} {times[mode][-1]:.2f} s/step", flush=True)
    best = {mode: min(t) for mode, t in times.items()}
    print(
        f"best of {args.repeats}: plain {best['plain']:.2f} s/step; after a generator dataset "
        f"{best['generator']:.2f} s/step ({best['generator'] / best['plain']:.2f}x); after "
        f"make_dataset {best['pipeline']:.2f} s/step ({best['pipeline'] / best['plain']:.2f}x)"
    )


if __name__ == "__main__":
    main()
