"""Pix2PixHD discriminators: a PatchGAN and three of them at full, half and quarter scale."""

from __future__ import annotations

import keras

from vsgan.models.layers import Conv2D, Downsample, InstanceNormalization


@keras.saving.register_keras_serializable(package="vsgan")
class PatchDiscriminator(keras.Model):
    """A PatchGAN that returns every intermediate output, for feature matching.

    Layers (kernel 4, zero padding 2): conv stride 2 + LeakyReLU; `n_layers - 1` x
    [conv stride 2, norm, LeakyReLU]; conv stride 1, norm, LeakyReLU; conv stride 1 to one
    logit channel. Channels double from `ndf`, capped at 512.

    Args:
        in_channels: channels of the (condition, stain) pair concatenated.
        ndf: filters of the first layer.
        n_layers: strided layers (3 in pix2pixHD).

    Returns (when called): a list of `n_layers + 2` feature maps; the last is the logits.

    Example:
    >>> d = PatchDiscriminator(2, ndf=8)
    >>> [f.shape[1] for f in d(keras.ops.zeros((1, 256, 256, 2)))]
    [129, 65, 33, 34, 35]
    """

    def __init__(self, in_channels: int = 2, ndf: int = 64, n_layers: int = 3, **kwargs):
        inputs = keras.Input((None, None, in_channels), name="pair")
        outputs = []
        x = inputs
        filters = ndf
        for i in range(n_layers + 2):
            last = i == n_layers + 1
            if 0 < i:
                filters = 1 if last else min(filters * 2, 512)
            x = keras.layers.ZeroPadding2D(2, name=f"layer{i}_pad")(x)
            x = Conv2D(
                filters,
                4,
                strides=2 if i < n_layers else 1,
                kernel_initializer=keras.initializers.RandomNormal(0.0, 0.02),
                name=f"layer{i}_conv",
                dtype="float32" if last else None,
            )(x)
            if 0 < i and not last:
                x = InstanceNormalization(name=f"layer{i}_norm")(x)
            if not last:
                x = keras.layers.LeakyReLU(0.2, name=f"layer{i}_lrelu")(x)
            outputs.append(x)
        super().__init__(inputs, outputs, **kwargs)
        self.in_channels, self.ndf, self.n_layers = in_channels, ndf, n_layers

    def get_config(self):
        return {
            "name": self.name,
            "in_channels": self.in_channels,
            "ndf": self.ndf,
            "n_layers": self.n_layers,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="vsgan")
class MultiScaleDiscriminator(keras.Model):
    """`num_d` identical PatchGANs; scale i sees the pair average-pooled i times.

    Args:
        in_channels: channels of the (condition, stain) pair concatenated.
        ndf: filters of each PatchGAN's first layer.
        num_d: number of scales.
        n_layers: strided layers per PatchGAN.

    Returns (when called): a list over scales of lists of feature maps (last = logits).

    Example:
    >>> d = MultiScaleDiscriminator(2, ndf=8, num_d=3)
    >>> [s[-1].shape[1] for s in d(keras.ops.zeros((1, 256, 256, 2)))]
    [35, 19, 11]
    """

    def __init__(
        self, in_channels: int = 2, ndf: int = 64, num_d: int = 3, n_layers: int = 3, **kwargs
    ):
        inputs = keras.Input((None, None, in_channels), name="pair")
        outputs = []
        x = inputs
        for i in range(num_d):
            if i > 0:
                x = Downsample(name=f"downsample{i}")(x)
            outputs.append(PatchDiscriminator(in_channels, ndf, n_layers, name=f"scale{i}")(x))
        super().__init__(inputs, outputs, **kwargs)
        self.in_channels, self.ndf, self.num_d, self.n_layers = in_channels, ndf, num_d, n_layers

    def get_config(self):
        return {
            "name": self.name,
            "in_channels": self.in_channels,
            "ndf": self.ndf,
            "num_d": self.num_d,
            "n_layers": self.n_layers,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
