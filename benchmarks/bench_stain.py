"""Whole-field staining speed and memory: does time per pixel stay flat and memory bounded?

Stains square uint16 fields of 512, 1024, 2048 and 4096 px with `vsgan.stain` (tiled, the
default 512 px tiles with 128 px overlap) and prints megapixels per second and peak resident
memory. Each size runs in a fresh process so its peak RSS is its own.

Model: a compact global generator, ngf 16, n_downsample 3, n_blocks 9, dropout 0.2 (random
weights: speed and memory do not depend on them), 1 -> 1 channel, float32.

Run (from the repository root):

    nice -n 10 python benchmarks/bench_stain.py
    nice -n 10 python benchmarks/bench_stain.py --sizes 2048 --samples 4

Also prints the convolution GFLOP/s of the generator passes (analytic count, see
`common.py`) and the ratio to a 3x3 convolution peak probe (256 -> 256 channels, 64 x 64,
batch 4, same compute dtype) measured in the same process just before and after the timed
call (target: >= 0.70), and microseconds per pixel (target: flat across sizes); "comp" =
pixels the generator computed per field pixel (tile overlap), "us/cpx" = microseconds per
computed pixel.
`--precision mixed_bfloat16` runs the generator under the bfloat16 policy.

Columns: tiles; seconds of the timed call (after a warm-up that traces the generator);
Mpx/s; ms per megapixel; peak RSS of the process; "fields" = the field-sized arrays stain
must hold (mean and std accumulators, blending weights; the raw field is the caller's);
"working" = peak RSS above the post-warm-up baseline minus those arrays, i.e. what tiling
must keep bounded (it also holds TensorFlow's and malloc's caches, which vary by tens of
MiB from run to run); "numpy work" = peak of NumPy buffers (tracemalloc) minus the field
arrays: the tile-batch working set of stain itself; "seam" = mean |gradient| on tile
borders / elsewhere (1 = invisible).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc

import numpy as np


def _status(key: str) -> int:
    """A memory figure of this process from /proc, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak() -> None:
    # Linux: writing 5 to clear_refs resets VmHWM (peak RSS) to the current RSS.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _field(size: int, seed: int = 0) -> np.ndarray:
    """A uint16 phase-like field: blobs on a slow illumination ramp."""
    rng = np.random.default_rng(seed)
    small = rng.standard_normal((size // 8 + 1, size // 8 + 1))
    texture = np.kron(small, np.ones((8, 8)))[:size, :size]
    ramp = np.linspace(0, 1, size)[None, :]
    return (2000 + 300 * texture + 500 * ramp).clip(0, 65535).astype(np.uint16)


def _seam_ratio(mean: np.ndarray, grid) -> float:
    m = mean[..., 0].astype(np.float64)
    ratios = []
    for axis, starts in ((1, grid.x_starts), (0, grid.y_starts)):
        tile = grid.tile_shape[axis]
        profile = np.abs(np.diff(m, axis=axis)).mean(axis=1 - axis)
        lines = [s - 1 for s in starts[1:]] + [s + tile - 1 for s in starts[:-1]]
        lines += [(a + tile + b) // 2 for a, b in zip(starts[:-1], starts[1:])]
        border = np.zeros(profile.size, bool)
        border[lines] = True
        elsewhere = ~border
        elsewhere[:4] = elsewhere[-4:] = False
        if border.any():
            ratios.append(profile[border].mean() / profile[elsewhere].mean())
    return max(ratios) if ratios else float("nan")


def run_one(args) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    import vsgan
    from vsgan.inference.stain import stain, tile_grid

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import PeakProbe, flops

    keras.mixed_precision.set_global_policy(args.precision)
    keras.utils.set_random_seed(0)
    model = vsgan.Pix2PixHD(
        1,
        1,
        ngf=args.ngf,
        n_downsample=args.n_downsample,
        n_blocks=args.n_blocks,
        dropout=0.2,
        ndf=8,
        num_d=1,
    )
    kwargs = dict(samples=args.samples, tile_size=args.tile_size, batch_size=args.batch_size)
    stain(model, _field(1024, seed=1), **kwargs)  # warm-up: traces every batch shape
    image = _field(args.one)
    probe = PeakProbe("bfloat16" if args.precision == "mixed_bfloat16" else "float32")
    peak_before = probe.measure()
    baseline = _status("VmRSS")
    _reset_peak()
    tracemalloc.start()  # NumPy reports its buffers to tracemalloc; TensorFlow does not
    start = time.perf_counter()
    result = stain(model, image, **kwargs)
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    numpy_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak_after = probe.measure()
    pixels = args.one**2
    # Analytic convolution FLOPs of every generator pass stain made (tiles x samples).
    tile_flops = flops(model.generator, (1, *result.tile_shape, 1))
    total_flops = tile_flops * result.tiles * result.samples * result.views
    peak_gflops = (peak_before + peak_after) / 2
    # What stain must hold field-sized: mean (+ std) accumulators and the blending weights.
    arrays = 4 * pixels * (2 + (result.std is not None))
    grid = tile_grid(args.one, args.one, args.tile_size, None, model.multiple)
    return {
        "size": args.one,
        "tiles": result.tiles,
        "seconds": seconds,
        "mpx_per_s": pixels / 1e6 / seconds,
        "ms_per_mpx": 1e3 * seconds / (pixels / 1e6),
        "peak_mib": peak / 2**20,
        "fields_mib": arrays / 2**20,
        "working_mib": (peak - baseline - arrays) / 2**20,
        "numpy_work_mib": (numpy_peak - arrays) / 2**20,
        "seam": _seam_ratio(result.mean, grid),
        "gflops": total_flops / seconds / 1e9,
        "peak_gflops": peak_gflops,
        "ratio": total_flops / seconds / 1e9 / peak_gflops,
        "us_per_px": 1e6 * seconds / pixels,
        # Pixels the generator computed per field pixel (tile overlap and padding).
        "computed": result.tiles * result.tile_shape[0] * result.tile_shape[1] / pixels,
        "us_per_computed_px": 1e6
        * seconds
        / (result.tiles * result.tile_shape[0] * result.tile_shape[1]),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--n-downsample", type=int, default=3)
    parser.add_argument("--n-blocks", type=int, default=9)
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process mode
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args)))
        return

    print(
        f"vsgan.stain: Pix2PixHD global generator ngf={args.ngf} n_downsample="
        f"{args.n_downsample} n_blocks={args.n_blocks}, 1->1 channel, {args.precision}; tile "
        f"{args.tile_size}, overlap {args.tile_size // 4}, batch {args.batch_size}, "
        f"samples {args.samples}; {os.cpu_count()} CPUs"
    )
    header = (
        f"{'field':>10} {'tiles':>5} {'s':>7} {'Mpx/s':>6} {'ms/Mpx':>7} "
        f"{'peak MiB':>8} {'fields MiB':>10} {'working MiB':>11} {'numpy work':>10} {'seam':>5} "
        f"{'us/px':>6} {'comp':>5} {'us/cpx':>6} {'GFLOP/s':>7} {'peak':>6} {'ratio':>5}"
    )
    print(header)
    child = [sys.executable, os.path.abspath(__file__)]
    passthrough = [
        f"--samples={args.samples}",
        f"--tile-size={args.tile_size}",
        f"--batch-size={args.batch_size}",
        f"--ngf={args.ngf}",
        f"--n-downsample={args.n_downsample}",
        f"--n-blocks={args.n_blocks}",
        f"--precision={args.precision}",
    ]
    for size in args.sizes:
        out = subprocess.run(
            child + passthrough + [f"--one={size}"], capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            print(f"{size}: failed\n{out.stderr[-2000:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{r['size']:>4}x{r['size']:<5} {r['tiles']:>5} {r['seconds']:>7.2f} "
            f"{r['mpx_per_s']:>6.3f} {r['ms_per_mpx']:>7.0f} {r['peak_mib']:>8.0f} "
            f"{r['fields_mib']:>10.0f} {r['working_mib']:>11.0f} {r['numpy_work_mib']:>10.0f} "
            f"{r['seam']:>5.2f} {r['us_per_px']:>6.2f} {r['computed']:>5.2f} "
            f"{r['us_per_computed_px']:>6.2f} {r['gflops']:>7.1f} "
            f"{r['peak_gflops']:>6.1f} {r['ratio']:>5.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
