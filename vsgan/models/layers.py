"""Small layers pix2pixHD needs that core Keras lacks, each matching its PyTorch counterpart."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="vsgan")
class ReflectionPadding2D(keras.layers.Layer):
    """Mirror-pads height and width like `torch.nn.ReflectionPad2d`.

    Args:
        padding: pixels added on each side of height and width.

    Example:
    >>> ReflectionPadding2D(3)(keras.ops.ones((1, 8, 8, 1))).shape
    (1, 14, 14, 1)
    """

    def __init__(self, padding: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, x):
        p = self.padding
        return ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        grow = 2 * self.padding
        return (b, None if h is None else h + grow, None if w is None else w + grow, c)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


@keras.saving.register_keras_serializable(package="vsgan")
class InstanceNormalization(keras.layers.Layer):
    """Instance norm without scale or shift, as `torch.nn.InstanceNorm2d(affine=False)`.

    Statistics are computed in float32 even under a bfloat16 policy: the variance of a
    large feature map loses too many digits in bfloat16.

    Args:
        epsilon: added to the variance.
    """

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, x):
        x32 = ops.cast(x, "float32")
        mean, var = ops.moments(x32, axes=[1, 2], keepdims=True)
        y = (x32 - mean) * ops.rsqrt(var + self.epsilon)
        return ops.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="vsgan")
class Downsample(keras.layers.Layer):
    """3x3 average pooling, stride 2, padding 1 excluded from the average.

    Equals `torch.nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)`, the
    pyramid step of pix2pixHD's multi-scale discriminator and local enhancer.
    """

    def call(self, x):
        pad = [[0, 0], [1, 1], [1, 1], [0, 0]]
        total = ops.average_pool(ops.pad(x, pad), 3, strides=2, padding="valid")
        ones = ops.ones_like(x[..., :1])
        count = ops.average_pool(ops.pad(ones, pad), 3, strides=2, padding="valid")
        return total / count

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        half = lambda n: None if n is None else (n - 1) // 2 + 1  # noqa: E731
        return (b, half(h), half(w), c)


@keras.saving.register_keras_serializable(package="vsgan")
class PadToMultiple(keras.layers.Layer):
    """Mirror-pads height and width at the bottom and right up to a multiple.

    The generator halves the image `n_downsample` times, so it needs sizes divisible by
    `2**n_downsample`, and at least twice that, so the bottleneck is wide enough to
    reflect-pad. Padding inside the model lets users pass any size.

    Args:
        multiple: the size granularity the network needs.
    """

    def __init__(self, multiple: int, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, x):
        shape = ops.shape(x)
        for axis in (1, 2):
            n = shape[axis]
            # Symmetric (edge-repeating) mirror indices, valid for pads longer than the
            # image, which ops.pad's mirror modes refuse.
            size = ops.maximum(n + (-n) % self.multiple, 2 * self.multiple)
            i = ops.arange(size) % (2 * n)
            x = ops.take(x, ops.where(i < n, i, 2 * n - 1 - i), axis=axis)
        return x

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        m = self.multiple
        up = lambda n: None if n is None else max(-(-n // m) * m, 2 * m)  # noqa: E731
        return (b, up(h), up(w), c)

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="vsgan")
class CropLike(keras.layers.Layer):
    """Crops the first input to the height and width of the second (undoes `PadToMultiple`)."""

    def call(self, inputs):
        x, reference = inputs
        shape = ops.shape(reference)
        return x[:, : shape[1], : shape[2], :]

    def compute_output_shape(self, input_shapes):
        x_shape, ref_shape = input_shapes
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])


@keras.saving.register_keras_serializable(package="vsgan")
class CropTopLeft(keras.layers.Layer):
    """Drops the first row and column.

    A 'valid' stride-2 transposed 3x3 convolution followed by this crop equals torch's
    `ConvTranspose2d(3, stride=2, padding=1, output_padding=1)`; Keras' 'same' padding
    would shift the output by one pixel.
    """

    def call(self, x):
        return x[:, 1:, 1:, :]

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None else h - 1, None if w is None else w - 1, c)
