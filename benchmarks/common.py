"""Shared benchmark helpers: analytic FLOP counts, the convolution peak probe, timing.

FLOPs are counted analytically (2 multiply-adds per MAC) over the Keras Conv2D and
Conv2DTranspose layers a model actually calls for a given input shape; everything else
(norms, padding, activations, losses, optimizer) is left out, so GFLOP/s here is "useful
convolution arithmetic per second". The shapes are read by tracing the model once
(`tf.function.get_concrete_function`: no arithmetic runs), so layers nested inside custom
layers (e.g. the residual blocks' convolutions) are counted too.

    conv            2 * kh * kw * cin * cout * Hout * Wout * batch
    transposed conv 2 * kh * kw * cin * cout * Hin  * Win  * batch  (each input pixel
                    scatters one kh x kw x cout patch; no multiplications by zeros)
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@dataclass
class ConvCall:
    name: str
    kind: str  # "conv" or "tconv"
    flops: float
    cin: int
    cout: int
    out_hw: tuple[int, int]


def conv_calls(model, input_shape) -> list[ConvCall]:
    """Every convolution `model` runs on an input of `input_shape` (batch included), in order.

    `model` may return nested structures (the multi-scale discriminator does).
    """
    import keras
    import tensorflow as tf

    calls: list[ConvCall] = []
    originals = {}

    def wrap(cls, kind):
        original = cls.call
        originals[cls] = original

        def call(self, inputs, *args, **kwargs):
            out = original(self, inputs, *args, **kwargs)
            kh, kw = self.kernel_size
            b, hin, win, cin = (int(d) for d in inputs.shape)
            _, hout, wout, cout = (int(d) for d in out.shape)
            if kind == "conv":
                flops = 2.0 * kh * kw * cin * cout * hout * wout * b
            else:
                flops = 2.0 * kh * kw * cin * cout * hin * win * b
            calls.append(ConvCall(self.name, kind, flops, cin, cout, (hout, wout)))
            return out

        cls.call = call

    wrap(keras.layers.Conv2D, "conv")
    wrap(keras.layers.Conv2DTranspose, "tconv")
    try:
        fn = tf.function(lambda x: model(x, training=False))
        fn.get_concrete_function(tf.TensorSpec(input_shape, tf.float32))
    finally:
        for cls, original in originals.items():
            cls.call = original
    return calls


def flops(model, input_shape) -> float:
    return sum(c.flops for c in conv_calls(model, input_shape))


@dataclass
class StepFlops:
    """Convolution FLOPs of one `Pix2PixHD.train_step` (whole batch), by part."""

    g_forward: float
    g_backward: float
    d_forward: float  # D(x, fake) and D(x, y)
    d_backward: float  # d_tape: weight grads of both passes + their input grads (but layer 0)
    g_through_d: float  # g_tape: input grads back through D(x, fake) to the fake image

    @property
    def total(self) -> float:
        return (
            self.g_forward + self.g_backward + self.d_forward + self.d_backward + self.g_through_d
        )


def train_step_flops(model, batch: int, height: int, width: int) -> StepFlops:
    """Counts exactly what `Pix2PixHD.train_step` runs (graph mode prunes unused gradients).

    - generator: forward F, backward = weight grads F + input grads (F minus its first
      conv, whose input is the data);
    - discriminator, every scale, on (x, fake) and on (x, y): forward;
    - d_tape: weight grads of both passes, input grads of both passes except the first
      conv of each scale (the pair is not a D variable);
    - g_tape: input grads through D(x, fake) down to `fake` (all convs, first included),
      no D weight grads; D(x, y) features are stop-gradient targets, so nothing there.
    """
    g_calls = conv_calls(model.generator, (batch, height, width, model.in_channels))
    pair_c = model.in_channels + model.out_channels
    d_calls = conv_calls(model.discriminator, (batch, height, width, pair_c))
    fg = sum(c.flops for c in g_calls)
    fd = sum(c.flops for c in d_calls)
    # First conv of each PatchGAN scale (input is the concatenated pair).
    d_first = sum(c.flops for c in d_calls if c.name == "layer0_conv")
    g_first = g_calls[0].flops
    if not model.adversarial:
        return StepFlops(fg, 2 * fg - g_first, 0.0, 0.0, 0.0)
    return StepFlops(
        g_forward=fg,
        g_backward=2 * fg - g_first,
        d_forward=2 * fd,
        d_backward=2 * fd + 2 * (fd - d_first),
        g_through_d=fd,
    )


class PeakProbe:
    """A large 3x3 'same' convolution (default 256 -> 256 channels, 64 x 64, batch 4).

    `dtype` "float32" or "bfloat16" (the compute dtype of mixed_bfloat16). Call `measure()`
    between model timings to get the peak under the same load.
    """

    def __init__(self, dtype: str = "float32", channels: int = 256, size: int = 64, batch: int = 4):
        import tensorflow as tf

        self.dtype = dtype
        self.flops = 2.0 * 9 * channels * channels * size * size * batch
        rng = tf.random.Generator.from_seed(0)
        self.x = tf.cast(rng.normal((batch, size, size, channels)), dtype)
        self.w = tf.cast(rng.normal((3, 3, channels, channels)) * 0.02, dtype)
        self.fn = tf.function(lambda x, w: tf.nn.conv2d(x, w, 1, "SAME"))
        for _ in range(3):
            self.fn(self.x, self.w).numpy()

    def measure(self, repeats: int = 5) -> float:
        """Median GFLOP/s of `repeats` calls."""
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            self.fn(self.x, self.w).numpy()
            times.append(time.perf_counter() - start)
        return self.flops / statistics.median(times) / 1e9


def time_call(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    fn: Callable[[], object], flops: float, probe: PeakProbe, repeats: int, warmup: int = 1
) -> dict:
    """Times `fn` `repeats` times, measuring the peak before each run.

    Returns median seconds, GFLOP/s, peak GFLOP/s and the median of the per-run
    ratios (model / peak measured just before it), so load changes cancel out.
    """
    for _ in range(warmup):
        fn()
    seconds, peaks, ratios = [], [], []
    for _ in range(repeats):
        peak = probe.measure()
        s = time_call(fn)
        seconds.append(s)
        peaks.append(peak)
        ratios.append(flops / s / 1e9 / peak)
    med = statistics.median(seconds)
    return {
        "seconds": med,
        "all_seconds": seconds,
        "gflops": flops / med / 1e9,
        "peak": statistics.median(peaks),
        "ratio": statistics.median(ratios),
    }


def load_line() -> str:
    """The 1-minute load average and the CPU count, for the record."""
    try:
        one, five, _ = os.getloadavg()
        return f"load average {one:.1f} / {five:.1f} (1 / 5 min) on {os.cpu_count()} CPUs"
    except OSError:
        return f"{os.cpu_count()} CPUs"
