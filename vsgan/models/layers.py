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
    >>> tuple(ReflectionPadding2D(3)(keras.ops.ones((1, 8, 8, 1))).shape)
    (1, 14, 14, 1)
    """

    def __init__(self, padding: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, x):
        # Mirrored slices, not ops.pad(mode="reflect"): TensorFlow's MirrorPad refuses a
        # batch of 0 images, which a replica gets when the last batch is smaller than the
        # number of replicas (MirroredStrategy).
        p = self.padding
        if p == 0:
            return x
        x = ops.concatenate([x[:, p:0:-1], x, x[:, -2 : -2 - p : -1]], axis=1)
        return ops.concatenate([x[:, :, p:0:-1], x, x[:, :, -2 : -2 - p : -1]], axis=2)

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

    On the TensorFlow backend this runs as one fused batch-norm kernel (forward and
    gradient): the (B, H, W, C) map is viewed as one image with B * C channels, whose
    per-channel training statistics are exactly the per-image, per-channel instance
    statistics (biased variance, as torch). The fused kernel reads bfloat16 directly and
    accumulates in float32. Measured on the 2-core AVX-512 machine (forward + backward,
    benchmarks/README.md): 3-4x faster than the generic moments graph in bfloat16,
    1.1-1.5x in float32.

    Args:
        epsilon: added to the variance.
    """

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, x):
        if keras.backend.backend() == "tensorflow":
            return self._fused(x)
        x32 = ops.cast(x, "float32")
        mean, var = ops.moments(x32, axes=[1, 2], keepdims=True)
        y = (x32 - mean) * ops.rsqrt(var + self.epsilon)
        return ops.cast(y, self.compute_dtype)

    def _fused(self, x):
        import tensorflow as tf

        if x.dtype not in (tf.float32, tf.bfloat16, tf.float16):
            x = tf.cast(x, self.compute_dtype)
        shape = tf.shape(x)
        b, h, w, c = shape[0], shape[1], shape[2], shape[3]
        if x.shape[0] == 1:
            flat = tf.reshape(x, [1, h, w, c])
        else:
            flat = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, h, w, b * c])
        ones = tf.ones([b * c], tf.float32)
        zeros = tf.zeros([b * c], tf.float32)
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(
            flat, ones, zeros, epsilon=self.epsilon, is_training=True
        )
        if x.shape[0] == 1:
            y = tf.reshape(y, shape)
        else:
            y = tf.transpose(tf.reshape(y, [h, w, b, c]), [2, 0, 1, 3])
        return tf.cast(y, self.compute_dtype)

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
            # image, which ops.pad's mirror modes refuse. `(m - n % m) % m`, not `(-n) % m`:
            # tf2onnx turns a modulo of a negative number into a truncating Div, wrong in ONNX.
            m = self.multiple
            size = ops.maximum(n + (m - n % m) % m, 2 * m)
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


# Read when a convolution is traced; benchmarks switch it off to measure the native kernels.
FORWARD_CONV_GRADIENTS = True
MAX_FORWARD_GRADIENT_FILTERS = 4


def _valid_conv(x, kernel):
    """Stride-1 'valid' convolution whose gradients are forward convolutions (TF backend).

    Mathematically the same gradients as TensorFlow's Conv2DBackpropInput / -Filter
    (only the float summation order differs, ~1e-7 relative), but computed as forward
    convolutions, which oneDNN runs far faster on CPUs for the shapes of pix2pixHD:
    the input gradient is the convolution of the zero-padded output gradient with the
    flipped, in/out-swapped kernel; the kernel gradient is the convolution of the input,
    batch and channels swapped, with the output gradient as the kernel.
    """
    import tensorflow as tf

    @tf.custom_gradient
    def conv(x, kernel):
        def grad(dy):
            kh, kw = kernel.shape[0], kernel.shape[1]
            flipped = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])
            padded = tf.pad(dy, [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]])
            dx = tf.nn.conv2d(padded, flipped, 1, "VALID")

            def kernel_grad():
                swapped = tf.nn.conv2d(
                    tf.transpose(x, [3, 1, 2, 0]), tf.transpose(dy, [1, 2, 0, 3]), 1, "VALID"
                )
                return tf.transpose(swapped, [1, 2, 0, 3])

            # A replica given 0 images (the last batch under MirroredStrategy) adds nothing;
            # the batch is the filter depth of the kernel gradient, which must be positive.
            dk = tf.cond(tf.shape(x)[0] > 0, kernel_grad, lambda: tf.zeros_like(kernel))
            return dx, dk

        return tf.nn.conv2d(x, kernel, 1, "VALID"), grad

    # Plain tensors in: a variable (cast under a mixed policy) must be read out here.
    return conv(tf.convert_to_tensor(x), tf.convert_to_tensor(kernel))


@keras.saving.register_keras_serializable(package="vsgan")
class Conv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` whose stride-1 'valid' gradients run as forward convolutions.

    The forward pass and the weights are those of `keras.layers.Conv2D` (so checkpoints
    and converters see a plain Conv2D); only the backward pass of stride-1, undilated,
    ungrouped 'valid' convolutions on the TensorFlow backend is computed differently
    (see `_valid_conv`; measured in benchmarks/README.md on a 2-core AVX2 CPU: 5-8x
    faster for the 7x7 output convolutions and the 1-channel PatchGAN heads). Only for
    layers with at most `MAX_FORWARD_GRADIENT_FILTERS` output channels and float32
    compute.
    """

    def _fast_gradients(self) -> bool:
        return (
            FORWARD_CONV_GRADIENTS
            and keras.backend.backend() == "tensorflow"
            and tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and self.padding == "valid"
            and self.groups == 1
            and self.data_format == "channels_last"
            # Where it was measured to pay: few output channels (the 7x7 output heads and
            # the PatchGAN 1-channel heads, 5-8x). Wide layers at small sizes (the seed's
            # 1024-channel residual blocks) lost with the swapped kernel gradient.
            and self.filters <= MAX_FORWARD_GRADIENT_FILTERS
            # bfloat16: the swapped kernel-gradient convolution sums b*h*w products at
            # bfloat16 accuracy on CPUs without native bf16 (off by several %), so
            # mixed precision keeps TensorFlow's own kernels.
            and self.compute_dtype == "float32"
        )

    def convolution_op(self, inputs, kernel):
        if self._fast_gradients():
            return _valid_conv(inputs, kernel)
        return super().convolution_op(inputs, kernel)
