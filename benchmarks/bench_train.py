"""Training-step speed of Pix2PixHD against the convolution peak measured in the same run.

For each configuration and precision: ms per sample of one `train_on_batch` (256 x 256,
batch 4; median of the timed steps after warm-up), the convolution GFLOP/s of that step
from an analytic count of exactly what `Pix2PixHD.train_step` runs (see
`common.train_step_flops`), and the ratio to a large 3x3 convolution (256 -> 256 channels,
64 x 64, batch 4) in the same compute dtype, probed just before every timed step. The
float32 and mixed_bfloat16 models of a configuration are timed alternately, so load
changes on a shared machine hit both alike.

Configurations:
    seed     ngf 64, 4 downsamplings, 9 blocks, ndf 64, 3 scales, 1 -> 1 channel
    compact  the isl-nuclei preset: ngf 16, 3 downsamplings, 4 blocks, ndf 16, 2 scales,
             13 -> 1 channels (dropout 0.2, L1 10)

    nice -n 10 python benchmarks/bench_train.py                      # both, both precisions
    nice -n 10 python benchmarks/bench_train.py --config compact --precision mixed_bfloat16
    nice -n 10 python benchmarks/bench_train.py --config none --quality   # bf16 quality check

`--ab-conv-gradients` times the float32 step with `vsgan.models.layers.Conv2D`'s forward-
convolution gradients against TensorFlow's own Conv2DBackpropInput / -Filter kernels
(two identically initialised models in one process, steps alternated) and checks that one
step from the same weights and batch gives the same weights. `--profile` runs the
TensorFlow profiler over one step and prints the op types and the ops that take longest.

    nice -n 10 python benchmarks/bench_train.py --config compact --ab-conv-gradients
    nice -n 10 python benchmarks/bench_train.py --config seed --batch 1 --profile

`--quality` trains a tiny model on synthetic cells for `--quality-steps` steps in float32
and in mixed_bfloat16 (same seeds, same batches) and compares validation PSNR / SSIM /
Pearson r; two seeds per precision show the seed-to-seed noise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import PeakProbe, load_line, time_call, train_step_flops  # noqa: E402

CONFIGS = {
    "seed": dict(
        in_channels=1, out_channels=1, ngf=64, n_downsample=4, n_blocks=9, ndf=64, num_d=3
    ),
    "compact": dict(
        in_channels=13,
        out_channels=1,
        ngf=16,
        n_downsample=3,
        n_blocks=4,
        ndf=16,
        num_d=2,
        dropout=0.2,
        lambda_l1=10,
    ),
}
PRECISIONS = ("float32", "mixed_bfloat16")
TARGET_RATIO, TARGET_BF16 = 0.60, 1.7


def _build(config: str, precision: str):
    import keras

    import vsgan

    keras.mixed_precision.set_global_policy(precision)
    try:
        keras.utils.set_random_seed(0)
        model = vsgan.Pix2PixHD(**CONFIGS[config])
        model.compile()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return model


def bench_config(config: str, precisions, size: int, batch: int, repeats: int) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    c = CONFIGS[config]
    x = rng.standard_normal((batch, size, size, c["in_channels"])).astype("float32")
    y = np.tanh(rng.standard_normal((batch, size, size, c["out_channels"]))).astype("float32")
    runs = {}
    for precision in precisions:
        model = _build(config, precision)
        flops = train_step_flops(model, batch, size, size).total
        probe = PeakProbe("bfloat16" if precision == "mixed_bfloat16" else "float32")
        start = time.perf_counter()
        model.train_on_batch(x, y)  # traces the train function
        trace_s = time.perf_counter() - start
        model.train_on_batch(x, y)  # warm-up
        runs[precision] = dict(
            model=model, flops=flops, probe=probe, trace_s=trace_s, seconds=[], peaks=[], ratios=[]
        )
    # Alternate precisions so that load changes affect both alike.
    for _ in range(repeats):
        for r in runs.values():
            peak = r["probe"].measure()
            s = time_call(lambda m=r["model"]: m.train_on_batch(x, y))
            r["seconds"].append(s)
            r["peaks"].append(peak)
            r["ratios"].append(r["flops"] / s / 1e9 / peak)
    out = {}
    for precision, r in runs.items():
        med = statistics.median(r["seconds"])
        out[precision] = dict(
            ms_per_sample=1e3 * med / batch,
            gflop_per_sample=r["flops"] / batch / 1e9,
            gflops=r["flops"] / med / 1e9,
            peak=statistics.median(r["peaks"]),
            ratio=statistics.median(r["ratios"]),
            trace_s=r["trace_s"],
            # Per-step speed-up of bf16 is computed from paired (adjacent) steps below.
            seconds=r["seconds"],
        )
    return out


def print_speed(config: str, results: dict, size: int, batch: int, repeats: int) -> None:
    for precision, r in results.items():
        ok = "met" if r["ratio"] >= TARGET_RATIO else "MISSED"
        print(
            f"{config:8s} {precision:15s} {r['ms_per_sample']:9.0f} ms/sample "
            f"{r['gflop_per_sample']:7.1f} GFLOP/sample {r['gflops']:7.1f} GFLOP/s  "
            f"peak {r['peak']:6.1f} GFLOP/s  ratio {r['ratio']:.2f} "
            f"(target {TARGET_RATIO:.2f}: {ok})  trace {r['trace_s']:.0f} s",
            flush=True,
        )
    if len(results) == 2:
        f32, bf16 = results["float32"]["seconds"], results["mixed_bfloat16"]["seconds"]
        speedup = statistics.median(a / b for a, b in zip(f32, bf16))
        ok = "met" if speedup >= TARGET_BF16 else "MISSED"
        print(
            f"{config:8s} mixed_bfloat16 / float32 speed-up per step: {speedup:.2f}x "
            f"(median of {len(f32)} adjacent pairs; target {TARGET_BF16}x: {ok})",
            flush=True,
        )


def ab_conv_gradients(config: str, size: int, batch: int, repeats: int) -> None:
    """Forward-convolution gradients (vsgan Conv2D) vs TensorFlow's backprop kernels."""
    import numpy as np

    from vsgan.models import layers

    rng = np.random.default_rng(0)
    c = CONFIGS[config]
    x = rng.standard_normal((batch, size, size, c["in_channels"])).astype("float32")
    y = np.tanh(rng.standard_normal((batch, size, size, c["out_channels"]))).astype("float32")
    models = {}
    for mode in ("native", "forward"):
        layers.FORWARD_CONV_GRADIENTS = mode == "forward"
        model = _build(config, "float32")
        models[mode] = model
        model.train_on_batch(x, y)  # traces with the flag as set now
    layers.FORWARD_CONV_GRADIENTS = True
    # Same numbers: one step from the same weights and batch.
    start = models["native"].get_weights()
    models["forward"].set_weights(start)
    for opt in ("g_optimizer", "d_optimizer"):
        for a, b in zip(
            getattr(models["native"], opt).variables, getattr(models["forward"], opt).variables
        ):
            b.assign(a)
    for model in models.values():
        model.train_on_batch(x, y)
    after = [m.get_weights() for m in models.values()]
    step = max(float(np.abs(a - s0).max()) for a, s0 in zip(after[0], start))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(*after))
    print(
        f"{config}: one step from the same weights: max |weight update| {step:.2e}, max "
        f"|difference native vs forward-gradient weights| {diff:.2e}",
        flush=True,
    )
    times = {mode: [] for mode in models}
    for r in range(repeats):
        for mode in ("native", "forward") if r % 2 == 0 else ("forward", "native"):
            times[mode].append(time_call(lambda m=models[mode]: m.train_on_batch(x, y)))
    for mode, values in times.items():
        print(f"  {mode:8s} " + " ".join(f"{1e3 * v / batch:7.0f}" for v in values) + " ms/sample")
    ratio = statistics.median(a / b for a, b in zip(times["native"], times["forward"]))
    print(f"  native / forward-gradient step time: {ratio:.2f}x (median of {repeats} pairs)")


def profile(config: str, size: int, batch: int, precision: str, top: int = 25) -> None:
    """Op types and single ops by time in one profiled step (TensorFlow profiler)."""
    import collections
    import glob
    import tempfile

    import numpy as np
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    rng = np.random.default_rng(0)
    c = CONFIGS[config]
    x = rng.standard_normal((batch, size, size, c["in_channels"])).astype("float32")
    y = np.tanh(rng.standard_normal((batch, size, size, c["out_channels"]))).astype("float32")
    model = _build(config, precision)
    model.train_on_batch(x, y), model.train_on_batch(x, y)
    logdir = tempfile.mkdtemp(prefix="vsgan-profile-")
    tf.profiler.experimental.start(logdir)
    wall = time_call(lambda: model.train_on_batch(x, y))
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    path = sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1]
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    by_type, by_op = collections.Counter(), collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name and not name.startswith("__inference"):
                    op, kind = name.rsplit(":", 1)
                    by_type[kind] += event.duration_ps / 1e9
                    by_op[name] += event.duration_ps / 1e9
    total = sum(by_type.values())
    print(
        f"profile {config} {precision} {size}^2 batch {batch}: step {1e3 * wall:.0f} ms wall, "
        f"{total:.0f} ms summed over ops (threads overlap)"
    )
    for kind, ms in by_type.most_common(top):
        print(f"  {kind:32s} {ms:9.1f} ms {100 * ms / total:5.1f} %")
    print("  longest ops:")
    for name, ms in by_op.most_common(top):
        print(f"  {ms:9.1f} ms  {name[-100:]}")


def quality(steps: int, seeds=(0, 1)) -> None:
    """Short seeded runs in float32 and mixed_bfloat16 on synthetic cells; val metrics."""
    import keras
    import numpy as np

    import vsgan
    from vsgan.datasets import synthetic_cells

    phase, stains = synthetic_cells(8, size=256, seed=0, targets=("nuclei",), as_arrays=True)
    x = (phase - phase.mean()) / phase.std()
    hi = np.percentile(stains, 99.8)
    y = np.clip(stains.astype("float32") / hi, 0, 1) * 2 - 1
    xt, yt, xv, yv = x[:6], y[:6], x[6:], y[6:]
    crop, batch = 64, 8
    print(
        f"quality: synthetic cells, 6 train / 2 val fields of 256 px, {crop} px crops, batch "
        f"{batch}, {steps} steps, Pix2PixHD ngf 16, 2 down, 2 blocks, ndf 16, 2 scales, L1 10",
        flush=True,
    )
    rows = {}
    for precision in PRECISIONS:
        for seed in seeds:
            rng = np.random.default_rng(seed)
            keras.mixed_precision.set_global_policy(precision)
            keras.utils.set_random_seed(seed)
            model = vsgan.Pix2PixHD(
                1, 1, ngf=16, n_downsample=2, n_blocks=2, ndf=16, num_d=2, lambda_l1=10
            )
            keras.mixed_precision.set_global_policy("float32")
            model.compile()
            start = time.perf_counter()
            for _ in range(steps):
                i = rng.integers(0, len(xt), batch)
                r0, c0 = rng.integers(0, 256 - crop, (2, batch))
                xb = np.stack([xt[k, a : a + crop, b : b + crop] for k, a, b in zip(i, r0, c0)])
                yb = np.stack([yt[k, a : a + crop, b : b + crop] for k, a, b in zip(i, r0, c0)])
                model.train_on_batch(xb, yb)
            seconds = time.perf_counter() - start
            m = model.evaluate(xv, yv, batch_size=2, verbose=0, return_dict=True)
            rows[(precision, seed)] = m
            print(
                f"  {precision:15s} seed {seed}: val PSNR {m['psnr']:6.2f} dB  SSIM "
                f"{m['ssim']:.3f}  Pearson r {m['pearson_r']:.3f}  ({seconds:.0f} s)",
                flush=True,
            )
    for metric in ("psnr", "ssim", "pearson_r"):
        f = [rows[("float32", s)][metric] for s in seeds]
        b = [rows[("mixed_bfloat16", s)][metric] for s in seeds]
        noise = max(f) - min(f)
        diff = np.mean(b) - np.mean(f)
        # Higher is better for all three: bf16 loses quality only if it is lower by more
        # than float32 varies between seeds.
        verdict = "no loss (within seed noise or better)" if diff >= -noise else "LOSS beyond noise"
        print(
            f"  {metric:9s} float32 mean {np.mean(f):.3f}  bf16 mean {np.mean(b):.3f}  "
            f"diff {diff:+.3f}  float32 seed spread {noise:.3f}: {verdict}",
            flush=True,
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--config", nargs="+", default=["seed", "compact"], choices=[*CONFIGS, "none"]
    )
    parser.add_argument("--precision", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed steps per case (default 3 seed, 7 compact)"
    )
    parser.add_argument("--quality", action="store_true", help="run the bf16 quality check")
    parser.add_argument("--quality-steps", type=int, default=300)
    parser.add_argument("--ab-conv-gradients", action="store_true", dest="ab")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)

    import tensorflow as tf

    print(
        f"bench_train: {args.size}x{args.size}, batch {args.batch}; TF {tf.__version__}; "
        f"intra-op threads {tf.config.threading.get_intra_op_parallelism_threads() or 'auto'}; "
        f"{load_line()} at start",
        flush=True,
    )
    for config in args.config:
        if config == "none":
            continue
        repeats = args.repeats or (3 if config == "seed" else 7)
        if args.ab or args.profile:
            if args.ab:
                ab_conv_gradients(config, args.size, args.batch, repeats)
            if args.profile:
                for precision in args.precision:
                    profile(config, args.size, args.batch, precision)
            continue
        results = bench_config(config, args.precision, args.size, args.batch, repeats)
        print_speed(config, results, args.size, args.batch, repeats)
    if args.quality:
        quality(args.quality_steps)
    print(f"{load_line()} at end", flush=True)


if __name__ == "__main__":
    main()
