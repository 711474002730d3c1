"""Throughput of the vsgan.data pipeline at 256x256, batch 4: patches/s and memory.

Runs on synthetic 1024x1024 fields (always) and on isl-condition-b (when found in $VSGAN_DATA or
../shared/data), with the default training augmentation, and compares with what one training step
of a small Pix2PixHD consumes on this machine.

    nice -n 10 python benchmarks/bench_pipeline.py [--batches 100] [--no-model]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(ds, batches: int, batch_size: int) -> float:
    it = iter(ds)
    next(it)  # warm up: decoding and caching of the fields, tracing of the maps
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--no-model", action="store_true", help="skip the training-step figure")
    args = parser.parse_args()

    from vsgan.data import make_dataset
    from vsgan.datasets import isl_condition_b, synthetic_cells

    specs = {"synthetic 8 x 1024^2": synthetic_cells(8, size=1024, seed=0)}
    for d in (os.environ.get("VSGAN_DATA"), Path(__file__).resolve().parents[2] / "shared/data"):
        if d and (Path(d) / "isl-condition-b").is_dir():
            specs["isl-condition-b (13 -> 3 ch)"] = isl_condition_b(d)
            break
    rates = {}
    for name, spec in specs.items():
        ds = make_dataset(spec, "train", patch_size=256, batch_size=4, seed=0, repeat=True)
        rates[name] = measure(ds, args.batches, 4)
        print(
            f"pipeline  {name:32s} {rates[name]:8.1f} patches/s   "
            f"fields held {ds.sampler.cache.peak}   peak RSS {rss_mib():.0f} MiB"
        )

    if not args.no_model:
        import vsgan

        model = vsgan.Pix2PixHD(1, 2, ngf=32, n_downsample=3, n_blocks=3, ndf=32, num_d=2)
        model.compile()
        ds = make_dataset(specs["synthetic 8 x 1024^2"], patch_size=256, batch_size=4, repeat=True)
        x = np.stack([b for b, _ in ds.take(1)])[0]
        y = np.stack([b for _, b in ds.take(1)])[0]
        model.train_on_batch(x, y)  # trace
        steps = 5
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        consumed = steps * 4 / (time.perf_counter() - start)
        print(f"training  Pix2PixHD ngf 32, 3 down, 3 blocks, 2 D   {consumed:8.1f} patches/s")
        worst = min(rates.values())
        print(f"pipeline / training: {worst / consumed:.0f}x (need >= 10x)")


if __name__ == "__main__":
    main()
