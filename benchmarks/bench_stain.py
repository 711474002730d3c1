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
`--precision` picks stain's compute precision (default: what `stain` picks by itself,
bfloat16 where the CPU computes it natively, else float32; see
`vsgan.inference.stain.default_precision`). `--preset NAME` stains with a pretrained
preset instead of the random compact generator.

Two more modes, each in one process so that their ratios share the load:

    nice -n 10 python benchmarks/bench_stain.py --sampling 8 --preset isl-nuclei
        Monte-Carlo sampling (`samples=8`) of one 512 px field with the deterministic
        prefix shared across samples (what stain does) against whole-generator passes per
        sample, alternated, and the ratio of the two.
    nice -n 10 python benchmarks/bench_stain.py --quality
        held-out metrics of every bundled preset (`evaluate_dataset`, all test regions) in
        float32 and in bfloat16, and their differences (target: |delta Pearson r| < 0.005).

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


def _precision(args) -> str | None:
    return None if args.precision == "default" else args.precision


def _model(args):
    import keras

    import vsgan

    if args.preset:
        return vsgan.load_pretrained(args.preset)
    keras.utils.set_random_seed(0)
    return vsgan.Pix2PixHD(
        1,
        1,
        ngf=args.ngf,
        n_downsample=args.n_downsample,
        n_blocks=args.n_blocks,
        dropout=0.2,
        ndf=8,
        num_d=1,
    )


def _channels(field: np.ndarray, model) -> np.ndarray:
    return np.repeat(field[..., None], model.in_channels, axis=-1)


def run_one(args) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from vsgan.inference.stain import resolve_precision, stain, tile_grid

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import PeakProbe, flops

    model = _model(args)
    kwargs = dict(
        samples=args.samples,
        tile_size=args.tile_size,
        batch_size=args.batch_size,
        precision=_precision(args),
    )
    stain(model, _channels(_field(1024, seed=1), model), **kwargs)  # warm-up: traces shapes
    image = _channels(_field(args.one), model)
    probe = PeakProbe(resolve_precision(_precision(args)))
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
    tile_flops = flops(model.generator, (1, *result.tile_shape, model.in_channels))
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


def run_sampling(args) -> None:
    """Shared deterministic prefix vs whole passes per sample, alternated in one process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import statistics

    from vsgan.inference.stain import _passes, resolve_precision, stain
    from vsgan.models.generator import split_at_dropout

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import flops, load_line

    model = _model(args)
    precision = resolve_precision(_precision(args))
    size = args.sizes[0]
    image = _channels(_field(size), model)
    passes = _passes(model.generator, precision)
    shared_prefix = passes.prefix
    prefix, _ = split_at_dropout(model.generator)
    share = flops(prefix, (1, size, size, model.in_channels)) / flops(
        model.generator, (1, size, size, model.in_channels)
    )
    kwargs = dict(samples=args.sampling, tile_size=args.tile_size, batch_size=args.batch_size)
    print(
        f"sampling: {args.preset or 'compact generator'}, {size}^2 field, samples "
        f"{args.sampling}, batch {args.batch_size}, {precision}; the prefix holds "
        f"{100 * share:.1f} % of the generator's conv FLOPs; {load_line()}"
    )
    times = {"shared": [], "whole": []}
    means = {}
    for r in range(args.rounds + 1):  # round 0 traces both paths
        for mode in ("shared", "whole") if r % 2 else ("whole", "shared"):
            passes.prefix = shared_prefix if mode == "shared" else None
            start = time.perf_counter()
            result = stain(model, image, precision=precision, **kwargs)
            if r:
                times[mode].append(time.perf_counter() - start)
            means[mode] = result.mean
    passes.prefix = shared_prefix
    for mode, values in times.items():
        print(f"  {mode:6s} " + " ".join(f"{v:7.2f}" for v in values) + " s")
    ratios = [w / s for w, s in zip(times["whole"], times["shared"])]
    print(
        f"  whole / shared time: median {statistics.median(ratios):.2f}x over {len(ratios)} "
        f"alternated rounds (upper bound from FLOPs: "
        f"{1 / (1 - share * (1 - 1 / args.sampling)):.2f}x); |mean difference| "
        f"{np.abs(means['shared'] - means['whole']).mean():.4f} (different random draws)"
    )
    print(f"  {load_line()} at end")


def run_quality(args) -> None:
    """Held-out metrics of the bundled presets in float32 and bfloat16."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import warnings

    from vsgan.evaluation.report import evaluate_dataset
    from vsgan.zoo import get_preset, list_pretrained, load_pretrained

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import load_line

    data = os.environ.get("VSGAN_DATA")
    print(f"quality: held-out ('test') metrics, float32 vs bfloat16; data {data}; {load_line()}")
    for name in args.presets or list_pretrained():
        record = get_preset(name)
        if not record.weights:
            continue
        model = load_pretrained(name)
        rows = {}
        for precision in ("float32", "bfloat16"):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = evaluate_dataset(
                    model,
                    record.dataset,
                    data_dir=data,
                    figures=False,
                    dataset_args=record.dataset_args,
                    precision=precision,
                )
            rows[precision] = (result[-1], len(result) - 1, time.perf_counter() - start)
        (a, n, ta), (b, _, tb) = rows["float32"], rows["bfloat16"]
        for key in sorted(a):
            if key.split("/")[-1] not in ("pearson_r", "psnr", "ssim", "dice", "f1@0.5"):
                continue
            delta = b[key] - a[key]
            flag = ""
            if key.endswith("pearson_r"):
                flag = "  (|delta| < 0.005: " + ("met)" if abs(delta) < 0.005 else "MISSED)")
            print(
                f"  {name:12s} {key:32s} float32 {a[key]:8.4f}  bfloat16 {b[key]:8.4f}  "
                f"delta {delta:+.4f}{flag}"
            )
        print(f"  {name:12s} {n} held-out regions; {ta:.0f} s float32, {tb:.0f} s bfloat16")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--n-downsample", type=int, default=3)
    parser.add_argument("--n-blocks", type=int, default=9)
    parser.add_argument(
        "--precision", default="default", choices=["default", "float32", "bfloat16", "float16"]
    )
    parser.add_argument("--preset", help="stain with this pretrained preset")
    parser.add_argument("--sampling", type=int, help="compare shared-prefix sampling, N samples")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (--sampling)")
    parser.add_argument("--quality", action="store_true", help="float32 vs bfloat16 metrics")
    parser.add_argument("--presets", nargs="+", help="presets for --quality (default: all)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process mode
    args = parser.parse_args(argv)
    if args.sampling:
        if args.sizes == [512, 1024, 2048, 4096]:
            args.sizes = [512]
        run_sampling(args)
        return
    if args.quality:
        run_quality(args)
        return
    if args.one:
        print(json.dumps(run_one(args)))
        return

    print(
        f"vsgan.stain: Pix2PixHD global generator ngf={args.ngf} n_downsample="
        f"{args.n_downsample} n_blocks={args.n_blocks}, 1->1 channel (or preset "
        f"{args.preset}), precision {args.precision}; tile "
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
    ] + ([f"--preset={args.preset}"] if args.preset else [])
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
