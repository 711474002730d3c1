"""Pix2PixHD generators: the global ResNet generator G1 and the coarse-to-fine local enhancer.

Layer order and padding follow the original PyTorch code exactly, so its checkpoints load
by layer order (see `vsgan.convert`). Both generators pad any input to the size multiple
they need and crop the output back, so callers never have to.
"""

from __future__ import annotations

import keras

from vsgan.models.layers import (
    Conv2D,
    CropLike,
    CropTopLeft,
    Downsample,
    InstanceNormalization,
    PadToMultiple,
    ReflectionPadding2D,
)


def _init():
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def _conv(filters: int, kernel: int, name: str, strides: int = 1) -> keras.layers.Conv2D:
    return Conv2D(
        filters, kernel, strides=strides, padding="valid", kernel_initializer=_init(), name=name
    )


@keras.saving.register_keras_serializable(package="vsgan")
class ResnetBlock(keras.layers.Layer):
    """[pad, conv 3x3, norm, ReLU, (dropout), pad, conv 3x3, norm] plus the identity.

    Dropout here is what Monte-Carlo sampling switches on at inference
    (`generator(x, training=True)`): instance norm behaves the same in both modes.

    Args:
        filters: channels in and out.
        dropout: dropout rate between the two convolutions (0 for none).
    """

    def __init__(self, filters: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.dropout = float(dropout)
        self.pad = ReflectionPadding2D(1)
        self.conv1 = _conv(self.filters, 3, "conv1")
        self.norm1 = InstanceNormalization()
        self.drop = keras.layers.Dropout(self.dropout) if self.dropout > 0 else None
        self.conv2 = _conv(self.filters, 3, "conv2")
        self.norm2 = InstanceNormalization()

    def build(self, input_shape):
        padded = self.pad.compute_output_shape(input_shape)
        self.pad.build(input_shape)
        self.conv1.build(padded)
        self.conv2.build(padded)
        self.norm1.build(input_shape)
        self.norm2.build(input_shape)
        if self.drop is not None:
            self.drop.build(input_shape)
        self.built = True

    def call(self, x, training=None):
        y = keras.ops.relu(self.norm1(self.conv1(self.pad(x))))
        if self.drop is not None:
            y = self.drop(y, training=training)
        y = self.norm2(self.conv2(self.pad(y)))
        return x + y

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "dropout": self.dropout}


_RANDOM_LAYERS = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.AlphaDropout,
)


def _is_random(layer) -> bool:
    """Whether `layer` (or a layer inside it) draws random numbers when training."""
    return any(
        isinstance(sub, _RANDOM_LAYERS) and getattr(sub, "rate", getattr(sub, "stddev", 1)) > 0
        for sub in layer._flatten_layers(include_self=True, recursive=True)
    )


def split_at_dropout(model: keras.Model) -> tuple[keras.Model, keras.Model] | None:
    """Splits a functional generator into its deterministic prefix and its random rest.

    The prefix holds every layer whose output does not depend on a dropout draw (for the
    global generator: the stem and the downsampling; for a local enhancer also each
    enhancer's front end); the rest holds the others. Both share the generator's layers,
    so they always use its current weights, and

        rest(prefix(x), training=t) == model(x, training=t)

    for both modes; with dropout on, the prefix can run once and its outputs be repeated
    for every Monte-Carlo sample. Nested functional generators (one per channel,
    `Pix2PixHD(split_outputs=True)`) are split inside.

    Args:
        model: a functional Keras model (`GlobalGenerator`, `LocalEnhancer` or a model
            that stacks them).

    Returns:
        (prefix, rest): `prefix` maps the model's input to a list of tensors, `rest` maps
        that list to the model's output; None when the model has no dropout.

    Example:
    >>> g = GlobalGenerator(1, 1, ngf=8, n_downsample=2, n_blocks=1, dropout=0.5)
    >>> prefix, rest = split_at_dropout(g)
    >>> x = keras.ops.ones((1, 20, 20, 1))
    >>> bool(keras.ops.all(rest(prefix(x)) == g(x)))
    True
    """
    if not _is_random(model):
        return None
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    input_ids = {id(t) for t in model.inputs}
    boundary: list = []  # deterministic tensors the random part reads
    boundary_inputs: dict[int, keras.KerasTensor] = {}
    state: dict[int, tuple[bool, object]] = {}  # id(tensor) -> (random?, tensor in rest)
    replayed: dict[int, list] = {}  # id(node) -> its outputs in the rest graph

    def rest_input(t):
        if id(t) not in boundary_inputs:
            boundary.append(t)
            boundary_inputs[id(t)] = keras.Input(tuple(t.shape[1:]), dtype=t.dtype)
        return boundary_inputs[id(t)]

    def visit(t):
        if id(t) in state:
            return state[id(t)]
        operation, node_index, tensor_index = t._keras_history
        if id(t) in input_ids or isinstance(operation, keras.layers.InputLayer):
            state[id(t)] = (False, t)
            return state[id(t)]
        node = operation._inbound_nodes[node_index]
        sources = node.arguments.keras_tensors
        visited = [visit(s) for s in sources]
        random_in = any(r for r, _ in visited)
        inner = None
        if isinstance(operation, keras.Model) and not random_in:
            inner = split_at_dropout(operation)
        if inner is not None:
            # A nested generator: its prefix joins ours, its rest runs in the rest.
            if id(node) not in replayed:
                prefix_out = keras.tree.flatten(
                    inner[0](*node.arguments.args, **node.arguments.kwargs)
                )
                rest_out = inner[1]([rest_input(p) for p in prefix_out])
                replayed[id(node)] = keras.tree.flatten(rest_out)
            result = (True, replayed[id(node)][tensor_index])
        elif not random_in and not _is_random(operation):
            result = (False, t)
        else:
            if id(node) not in replayed:
                swap = {
                    id(s): (r if rand else rest_input(s)) for s, (rand, r) in zip(sources, visited)
                }
                args = keras.tree.map_structure(
                    lambda a: swap.get(id(a), a), (node.arguments.args, node.arguments.kwargs)
                )
                replayed[id(node)] = keras.tree.flatten(operation(*args[0], **args[1]))
            result = (True, replayed[id(node)][tensor_index])
        state[id(t)] = result
        return result

    outputs = [visit(t) for t in model.outputs]
    rest_outputs = [r if rand else rest_input(t) for t, (rand, r) in zip(model.outputs, outputs)]
    prefix = keras.Model(inputs, list(boundary), name=f"{model.name}_prefix")
    rest = keras.Model(
        [boundary_inputs[id(t)] for t in boundary],
        rest_outputs[0] if len(rest_outputs) == 1 else rest_outputs,
        name=f"{model.name}_random",
    )
    return prefix, rest


def _conv_norm_relu(x, filters, kernel, name, strides=1, pad=0, reflect=False):
    if pad:
        pad_layer = ReflectionPadding2D(pad) if reflect else keras.layers.ZeroPadding2D(pad)
        x = pad_layer(x)
    x = _conv(filters, kernel, f"{name}_conv", strides)(x)
    return keras.layers.ReLU(name=f"{name}_relu")(InstanceNormalization(name=f"{name}_norm")(x))


def _upsample(x, filters, name):
    x = keras.layers.Conv2DTranspose(
        filters, 3, strides=2, padding="valid", kernel_initializer=_init(), name=f"{name}_conv"
    )(x)
    x = CropTopLeft(name=f"{name}_crop")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(InstanceNormalization(name=f"{name}_norm")(x))


def _output_head(x, out_channels, name):
    x = ReflectionPadding2D(3, name=f"{name}_pad")(x)
    x = _conv(out_channels, 7, f"{name}_conv")(x)
    # tanh in float32: the output is compared with float32 targets.
    return keras.layers.Activation("tanh", dtype="float32", name=f"{name}_tanh")(x)


def global_trunk(x, ngf, n_downsample, n_blocks, dropout, prefix=""):
    """G1 without its output head: returns features with `ngf` channels at input size."""
    x = _conv_norm_relu(x, ngf, 7, f"{prefix}conv_in", pad=3, reflect=True)
    for i in range(n_downsample):
        x = _conv_norm_relu(x, ngf * 2 ** (i + 1), 3, f"{prefix}down{i}", strides=2, pad=1)
    for i in range(n_blocks):
        x = ResnetBlock(ngf * 2**n_downsample, dropout, name=f"{prefix}block{i}")(x)
    for i in reversed(range(n_downsample)):
        x = _upsample(x, ngf * 2**i, f"{prefix}up{n_downsample - 1 - i}")
    return x


@keras.saving.register_keras_serializable(package="vsgan")
class GlobalGenerator(keras.Model):
    """Pix2PixHD's global ResNet generator G1 (input any size; output in [-1, 1]).

    Args:
        in_channels: label-free input channels.
        out_channels: predicted stain channels.
        ngf: filters of the first convolution; doubled at each downsampling.
        n_downsample: stride-2 convolutions (the input is padded to a multiple of
            `2**n_downsample` internally and the output cropped back).
        n_blocks: residual blocks at the bottleneck.
        dropout: dropout rate in the residual blocks (0.2 in the virtual-staining seed).

    Example:
    >>> g = GlobalGenerator(1, 1, ngf=8, n_downsample=2, n_blocks=1)
    >>> tuple(g(keras.ops.zeros((1, 30, 30, 1))).shape)
    (1, 30, 30, 1)
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        ngf: int = 64,
        n_downsample: int = 4,
        n_blocks: int = 9,
        dropout: float = 0.0,
        **kwargs,
    ):
        inputs = keras.Input((None, None, in_channels), name="label_free")
        x = PadToMultiple(2**n_downsample, name="pad_to_multiple")(inputs)
        x = global_trunk(x, ngf, n_downsample, n_blocks, dropout)
        x = _output_head(x, out_channels, "conv_out")
        outputs = CropLike(name="crop", dtype="float32")([x, inputs])
        super().__init__(inputs, outputs, **kwargs)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.ngf, self.n_downsample, self.n_blocks = ngf, n_downsample, n_blocks
        self.dropout = dropout
        self.multiple = 2**n_downsample

    def split_at_dropout(self) -> tuple[keras.Model, keras.Model] | None:
        """(deterministic prefix, random rest) sharing this generator's layers; see
        `vsgan.models.generator.split_at_dropout`."""
        return split_at_dropout(self)

    def get_config(self):
        return {
            "name": self.name,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "ngf": self.ngf,
            "n_downsample": self.n_downsample,
            "n_blocks": self.n_blocks,
            "dropout": self.dropout,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="vsgan")
class LocalEnhancer(keras.Model):
    """Pix2PixHD's coarse-to-fine generator: G1 on a downsampled input plus local enhancers.

    G1 (with `ngf * 2**n_local_enhancers` filters and no output head) sees the input
    average-pooled `n_local_enhancers` times. Each enhancer's front end downsamples its
    own input once; its features are SUMMED with the coarser level's output features,
    then pass residual blocks and an upsampling back end. Layers of G1 are named
    `global_*`, so a schedule can freeze them.

    Args:
        in_channels: label-free input channels.
        out_channels: predicted stain channels.
        ngf: filters at the finest level.
        n_downsample: stride-2 convolutions inside G1.
        n_blocks: residual blocks of G1.
        n_local_enhancers: enhancer levels (1 in pix2pixHD's 1024p recipes).
        n_blocks_local: residual blocks per enhancer.
        dropout: dropout rate in every residual block.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        ngf: int = 32,
        n_downsample: int = 4,
        n_blocks: int = 9,
        n_local_enhancers: int = 1,
        n_blocks_local: int = 3,
        dropout: float = 0.0,
        **kwargs,
    ):
        multiple = 2 ** (n_downsample + n_local_enhancers)
        inputs = keras.Input((None, None, in_channels), name="label_free")
        padded = PadToMultiple(multiple, name="pad_to_multiple")(inputs)
        pyramid = [padded]
        for i in range(n_local_enhancers):
            pyramid.append(Downsample(name=f"pyramid{i + 1}")(pyramid[-1]))
        x = global_trunk(
            pyramid[-1], ngf * 2**n_local_enhancers, n_downsample, n_blocks, dropout, "global_"
        )
        for level in range(n_local_enhancers, 0, -1):
            filters = ngf * 2 ** (level - 1)
            name = f"local{level}_"
            front = _conv_norm_relu(
                pyramid[level - 1], filters, 7, f"{name}in", pad=3, reflect=True
            )
            front = _conv_norm_relu(front, filters * 2, 3, f"{name}down", strides=2, pad=1)
            x = keras.layers.Add(name=f"{name}sum")([front, x])
            for b in range(n_blocks_local):
                x = ResnetBlock(filters * 2, dropout, name=f"{name}block{b}")(x)
            x = _upsample(x, filters, f"{name}up")
        x = _output_head(x, out_channels, "conv_out")
        outputs = CropLike(name="crop", dtype="float32")([x, inputs])
        super().__init__(inputs, outputs, **kwargs)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.ngf, self.n_downsample, self.n_blocks = ngf, n_downsample, n_blocks
        self.n_local_enhancers, self.n_blocks_local = n_local_enhancers, n_blocks_local
        self.dropout = dropout
        self.multiple = multiple

    def global_layers(self) -> list[keras.layers.Layer]:
        """The layers of G1 (frozen while the enhancers are first trained)."""
        return [layer for layer in self.layers if layer.name.startswith("global_")]

    def split_at_dropout(self) -> tuple[keras.Model, keras.Model] | None:
        """(deterministic prefix, random rest) sharing this generator's layers; see
        `vsgan.models.generator.split_at_dropout`."""
        return split_at_dropout(self)

    def get_config(self):
        return {
            "name": self.name,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "ngf": self.ngf,
            "n_downsample": self.n_downsample,
            "n_blocks": self.n_blocks,
            "n_local_enhancers": self.n_local_enhancers,
            "n_blocks_local": self.n_blocks_local,
            "dropout": self.dropout,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
