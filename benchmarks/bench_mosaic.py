"""Peak memory of staining a mosaic streamed from disk to disk, against the field size.

For each side (default 2048, 4096, 8192 px) a synthetic OME-Zarr field (uint16, 13 channels by
default, like a Z-stack of label-free planes) is written first, then a fresh process stains it
with `vsgan.inference.mosaic.stain_mosaic` (a tiny 13 -> 2 channel Pix2PixHD, 512 px tiles,
batches of 4) into an OME-Zarr on disk. It reports the peak resident memory (VmHWM), the peak
above the resident memory after a warm-up generator call (TensorFlow, the model), and the time.
With `--modes stream in-memory` the same field is also read whole and stained with `stain`.

    nice -n 10 python benchmarks/bench_mosaic.py [--sizes 2048 4096 8192] [--channels 13]
        [--modes stream in-memory] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import vsgan
from vsgan.data import Normalization

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024  # MiB
    return float("nan")

mode, source, output, channels = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
model = vsgan.Pix2PixHD(
    channels, 2, ngf=8, n_downsample=2, n_blocks=1,
    input_channels=[f"plane{k}" for k in range(channels)], output_channels=["nuclei", "membrane"],
    normalization={"input": Normalization("percentile", per_field=True).get_config(),
                   "target": Normalization.fixed([4400.0, 18372.0]).get_config()},
)
model.generator.predict_on_batch(np.zeros((4, 512, 512, channels), "float32"))  # warm up
baseline = status("VmRSS")
start = time.perf_counter()
if mode == "stream":
    from vsgan.inference.mosaic import stain_mosaic
    stain_mosaic(model, source, output, tile_size=512)
else:
    from vsgan.inference.stain import stain
    from vsgan.io.readers import read_image
    stain(model, read_image(source), tile_size=512)
seconds = time.perf_counter() - start
print(json.dumps({"peak_mib": status("VmHWM"), "baseline_mib": baseline, "seconds": seconds}))
"""


def make_field(path: Path, side: int, channels: int, seed: int = 0) -> None:
    """A side x side x channels uint16 OME-Zarr field, written in bands (never whole)."""
    import zarr

    from vsgan.io import ome_zarr

    rng = np.random.default_rng(seed)
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    names = [f"plane{k}" for k in range(channels)]
    array = ome_zarr.create_image(
        group, (1, channels, 1, side, side), names, dtype="uint16", chunks=(1, 1, 1, 1024, 1024)
    )
    for y0 in range(0, side, 1024):
        y1 = min(side, y0 + 1024)
        # Smooth cells-like blobs plus noise: compresses like real data, not like pure noise.
        yy, xx = np.mgrid[y0:y1, 0:side]
        base = 1500 + 800 * np.sin(yy / 37.0) * np.cos(xx / 53.0)
        for c in range(channels):
            noise = rng.normal(0, 120, base.shape)
            array[0, c, 0, y0:y1, :] = np.clip(base * (1 + 0.05 * c) + noise, 0, 65535)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192])
    parser.add_argument("--channels", type=int, default=13)
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["stream", "in-memory"],
        default=["stream"],
        help="in-memory: read the field whole and run `stain` (for contrast)",
    )
    parser.add_argument(
        "--keep", help="folder for the fields and outputs (default: a temporary one)"
    )
    args = parser.parse_args()

    folder = Path(args.keep or tempfile.mkdtemp(prefix="vsgan-bench-mosaic-"))
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    header = f"{'side':>6} {'mode':<9} {'field MiB':>10} {'peak RSS MiB':>13} {'above base':>11}"
    print(f"{header} {'s':>7}")
    try:
        for side in args.sizes:
            source = folder / f"field{side}.zarr"
            if not source.exists():
                start = time.perf_counter()
                make_field(source, side, args.channels)
                print(f"# wrote {source} in {time.perf_counter() - start:.0f} s")
            field_mib = side * side * args.channels * 2 / 2**20
            for mode in args.modes:
                output = folder / f"out{side}-{mode}.zarr"
                shutil.rmtree(output, ignore_errors=True)
                run = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        CHILD,
                        mode,
                        str(source),
                        str(output),
                        str(args.channels),
                    ],
                    capture_output=True,
                    text=True,
                    env=env,
                )
                if run.returncode != 0:
                    print(f"{side:>6} {mode:<9} failed: {run.stderr.strip().splitlines()[-1:]}")
                    continue
                r = json.loads(run.stdout.strip().splitlines()[-1])
                print(
                    f"{side:>6} {mode:<9} {field_mib:>10.0f} {r['peak_mib']:>13.0f} "
                    f"{r['peak_mib'] - r['baseline_mib']:>11.0f} {r['seconds']:>7.1f}",
                    flush=True,
                )
                shutil.rmtree(output, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
