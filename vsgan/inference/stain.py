"""`stain`: a whole raw label-free field in, its virtual stain (and uncertainty) out.

This is the one place that turns raw intensities into model inputs and back:

1. validate the image and normalise it with the statistics stored in the model;
2. cut the field into overlapping tiles (padded to the network's size multiple);
3. run the generator on batches of tiles, optionally several Monte-Carlo-dropout samples
   and the 8 flips/rotations of test-time augmentation per tile;
4. invert the target normalisation, reduce the samples to a mean and a standard deviation
   per tile, and blend the tiles into the field with a smooth window.

Why tiles with a smooth blend: instance normalisation makes every tile see its own local
statistics, so neighbouring tiles disagree slightly; cutting them at hard borders leaves
seams. Each tile's weight rises as a raised cosine over the whole overlap with its
neighbour (and is 1 at the field's own edges), and the weights of overlapping tiles sum
to 1, so the prediction moves smoothly from one tile to the next. The default tile
(512 px) matches the seed's largest training crops, so tiles see statistics like those the
model was trained on; the default overlap is a quarter tile. Memory is bounded by the tile
batch, not the field: the input is normalised tile by tile, so besides the caller's raw
field only the output accumulators are field-sized.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
from tqdm.auto import tqdm

from vsgan.errors import InputError

__all__ = [
    "DEFAULT_TILE_SIZE",
    "StainResult",
    "TileGrid",
    "check_batch",
    "read_fields",
    "stack_named",
    "default_precision",
    "resolve_precision",
    "sample",
    "stain",
    "tile_grid",
]

DEFAULT_TILE_SIZE = 512
# Monte-Carlo samples of one tile per generator call are capped by batch_size.
DEFAULT_BATCH_SIZE = 4


@dataclasses.dataclass
class StainResult:
    """The virtual stain of one field.

    Attributes:
        mean: (H, W, C_out) float32 mean prediction in target units.
        std: (H, W, C_out) float32 per-pixel standard deviation over the Monte-Carlo samples
            and test-time-augmentation views (ddof=1), target units; None for a single
            deterministic pass.
        samples: Monte-Carlo-dropout samples per view.
        views: test-time-augmentation views (8 with `tta=True`, else 1).
        tiles: number of tiles the field was cut into.
        tile_shape: (height, width) of each tile as fed to the generator.
        calibration: the model's interval calibration (a dict, see
            `vsgan.inference.calibration`), or None for an uncalibrated model.
    """

    mean: np.ndarray
    std: np.ndarray | None
    samples: int = 1
    views: int = 1
    tiles: int = 1
    tile_shape: tuple[int, int] = (0, 0)
    calibration: dict[str, Any] | None = None

    def interval(self, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """`(lower, upper)`: the calibrated prediction interval at coverage `level`.

        In target units, shaped like `mean`: on data like the calibration data, a fraction
        `level` of the measured stain's pixels lies inside. Needs a calibrated model
        (`vsgan.inference.calibration.calibrate_model`; `vsgan train` calibrates on its
        validation data) and, when the calibration scales the spread, the same sampling
        (`samples`, `tta`) as at calibration.
        """
        from vsgan.inference.calibration import Calibration

        if self.calibration is None:
            raise InputError(
                "this model is not calibrated, so its spread is no interval. Fix: "
                "vsgan.inference.calibration.calibrate_model(model, fields) on data it was "
                "neither trained nor tested on (vsgan train does it on the validation split)."
            )
        cal = Calibration.from_config(self.calibration)
        cal.check_sampling(self.samples, self.views)
        return cal.interval(self.mean, self.std, level)


class TileGrid(NamedTuple):
    """Where the tiles of a field lie: tile (y, x) covers rows y..y+h and columns x..x+w."""

    tile_shape: tuple[int, int]
    padded_shape: tuple[int, int]
    y_starts: tuple[int, ...]
    x_starts: tuple[int, ...]


def _axis_grid(length: int, tile: int, overlap: int, multiple: int):
    if length <= tile:
        # One tile, the field padded up to the network multiple.
        padded = math.ceil(length / multiple) * multiple
        return padded, padded, (0,)
    n = math.ceil((length - overlap) / (tile - overlap))
    # The smallest tile that still covers the field with n tiles overlapping by `overlap`:
    # less recomputed overlap, so the time per field pixel stays flat across field sizes.
    tile = min(tile, math.ceil((length + (n - 1) * overlap) / n / multiple) * multiple)
    starts = np.unique(np.round(np.linspace(0, length - tile, n)).astype(int))
    return tile, length, tuple(int(s) for s in starts)


def _resolve_tiling(tile_size, overlap, multiple: int) -> tuple[int, int]:
    if tile_size is None:
        tile_size = DEFAULT_TILE_SIZE
    if (
        isinstance(tile_size, bool)
        or not isinstance(tile_size, int | np.integer | float)
        or not math.isfinite(tile_size)
        or int(tile_size) != tile_size
        or tile_size < 1
        or tile_size > 2**20
    ):
        raise InputError(
            f"tile_size={tile_size!r}: give a positive number of pixels up to 2**20, e.g. 512."
        )
    # Tiles must be whole multiples of the network stride so nothing is padded inside them.
    tile = math.ceil(int(tile_size) / multiple) * multiple
    if overlap is None:
        overlap = tile // 4
    if (
        isinstance(overlap, bool)
        or not isinstance(overlap, int | np.integer | float)
        or not math.isfinite(overlap)
        or int(overlap) != overlap
        or not 0 <= overlap < tile
    ):
        raise InputError(
            f"overlap={overlap!r} must be a whole number of pixels in [0, tile_size={tile}); "
            f"the default is a quarter tile ({tile // 4})."
        )
    return tile, int(overlap)


def tile_grid(
    height: int,
    width: int,
    tile_size: int | None = None,
    overlap: int | None = None,
    multiple: int = 1,
) -> TileGrid:
    """The tile layout `stain` uses for a field.

    Tiles are at most `tile_size` (rounded up to `multiple`); along an axis longer than a
    tile, the fewest tiles that overlap by at least `overlap` pixels are used, shrunk to
    the smallest multiple that still covers the field, and spread evenly. Along an axis
    shorter than a tile the field is padded to the next multiple and one tile covers it.

    Args:
        height: field height in pixels.
        width: field width in pixels.
        tile_size: tile side (default 512).
        overlap: minimum overlap of neighbouring tiles (default a quarter tile).
        multiple: the network's size multiple (`model.multiple`).

    Returns:
        a `TileGrid`.

    Example:
    >>> tile_grid(1000, 300, tile_size=512, multiple=16)
    TileGrid(tile_shape=(432, 304), padded_shape=(1000, 304), y_starts=(0, 284, 568), x_starts=(0,))
    """
    height, width = _whole(height, "height"), _whole(width, "width")
    multiple = _whole(multiple, "multiple")
    for value, name in ((height, "height"), (width, "width")):
        _at_most(value, name, 2**24)
    _at_most(multiple, "multiple", 2**12)
    tile, overlap = _resolve_tiling(tile_size, overlap, multiple)
    th, hp, ys = _axis_grid(int(height), tile, overlap, multiple)
    tw, wp, xs = _axis_grid(int(width), tile, overlap, multiple)
    return TileGrid((th, tw), (hp, wp), ys, xs)


def _axis_weights(starts: tuple[int, ...], tile: int) -> list[np.ndarray]:
    """1-D blending weights per tile: raised-cosine ramps over each actual overlap."""
    weights = []
    for k, s in enumerate(starts):
        w = np.ones(tile, np.float64)
        if k > 0:
            o = starts[k - 1] + tile - s
            w[:o] *= np.sin(np.pi * (np.arange(o) + 0.5) / (2 * o)) ** 2
        if k + 1 < len(starts):
            o = s + tile - starts[k + 1]
            w[tile - o :] *= np.cos(np.pi * (np.arange(o) + 0.5) / (2 * o)) ** 2
        weights.append(w.astype(np.float32))
    return weights


# The 8 symmetries of the square: (quarter turns, flip left-right first).
_VIEWS = [(k, f) for f in (False, True) for k in range(4)]


def _forward(x: np.ndarray, view) -> np.ndarray:  # x: (B, H, W, C)
    k, flip = view
    if flip:
        x = x[:, :, ::-1]
    return np.ascontiguousarray(np.rot90(x, k, axes=(1, 2)))


def _inverse(y: np.ndarray, view) -> np.ndarray:  # y: (N, B, H, W, C)
    k, flip = view
    y = np.rot90(y, -k, axes=(2, 3))
    return y[:, :, :, ::-1] if flip else y


def check_field(image, in_channels: int, *, batch: bool = False) -> np.ndarray:
    """`image` as an array of one raw field (H, W, C_in), or `InputError` saying why.

    The one input check of vsgan: `stain`, `sample` and the CLI all use it.

    Args:
        image: (H, W) or (H, W, C_in) array of any numeric dtype; with `batch=True` also
            (B, H, W, C_in).
        in_channels: the model's input channels.
        batch: accept and return a (B, H, W, C_in) batch.

    Example:
    >>> check_field(np.zeros((4, 5), np.uint16), 1).shape
    (4, 5, 1)
    >>> check_field(np.zeros((2, 4, 5)), 2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    vsgan.errors.InputError: image has 5 channel(s) ... It looks channels-first: ...
    """
    try:
        x = np.asarray(image)
    except Exception as err:  # ragged lists and the like
        raise InputError(f"image cannot be read as an array ({err}); pass a numpy array.") from err
    if x.dtype.kind not in "biuf":
        raise InputError(
            f"image has dtype {x.dtype}, not a number type; pass the raw intensities as a "
            "numeric (e.g. uint16 or float32) array."
        )
    if x.ndim == 2 and (in_channels == 1 or not batch):
        x = x[..., None]
    if batch and x.ndim == 3:
        x = x[None]
    if x.ndim != (4 if batch else 3):
        form = f"(B, H, W, {in_channels}) or " if batch else ""
        raise InputError(
            f"image has shape {x.shape}; pass {form}one field as (H, W) or (H, W, {in_channels})."
        )
    if x.shape[-1] != in_channels:
        hint = (
            " It looks channels-first: use np.moveaxis(image, 0, -1)."
            if x.shape[-3] == in_channels
            else ""
        )
        raise InputError(
            f"image has {x.shape[-1]} channel(s) (shape {x.shape}) but the model takes "
            f"{in_channels}; pass (H, W, {in_channels}).{hint}"
        )
    if min(x.shape[-3:-1]) == 0 or x.size == 0:
        raise InputError(f"image is empty (shape {x.shape}); pass a field with pixels.")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise InputError(
            "image holds NaN or Inf pixels; replace them (e.g. np.nan_to_num) before staining."
        )
    _float32_range(x)
    return x


def _float32_range(x: np.ndarray) -> None:
    if x.dtype.kind == "f" and x.dtype.itemsize > 4:
        top = float(np.abs(x).max())
        if top > float(np.finfo(np.float32).max):
            raise InputError(
                f"image holds values up to {top:.3g}, beyond float32's range in which the "
                "model computes. Fix: rescale the image (e.g. divide by a constant)."
            )


def check_batch(model, x) -> np.ndarray:
    """`x` as a float32 (B, H, W, C_in) batch in model units, or `InputError` saying why."""
    return check_field(x, int(model.in_channels), batch=True).astype("float32", copy=False)


def _whole(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer | float):
        raise InputError(f"{name}={value!r}: give a whole number >= {minimum}.")
    if not (math.isfinite(value) and int(value) == value and value >= minimum):
        raise InputError(f"{name}={value!r}: give a whole number >= {minimum}.")
    return int(value)


MAX_SAMPLES = 10_000  # Monte-Carlo samples per image: beyond, the std stops changing


def _at_most(value: int, name: str, high: int) -> None:
    if value > high:
        raise InputError(f"{name}={value}: give at most {high}.")


# ------------------------------------------------------------------------------ precision
PRECISIONS = ("float32", "bfloat16", "float16")
_PRECISION_ALIASES = {
    "mixed_bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "mixed_float16": "float16",
    "fp16": "float16",
    "fp32": "float32",
}
_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
# Layers that keep their own dtype in a fast-precision pass: the output head's tanh and
# the crop / concatenation after it stay float32, as under mixed-precision training.
_KEEP_DTYPE = ("Activation", "CropLike", "Concatenate", "InputLayer")


def _cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def default_precision() -> str:
    """The fastest precision this machine computes the generator in without quality loss.

    bfloat16 on CPUs with native bfloat16 arithmetic (AVX512-BF16 or AMX: elsewhere
    TensorFlow emulates it, several times slower than float32), on GPUs bfloat16 from
    compute capability 8.0 (Ampere) and float16 on 7.x (tensor cores), float32 otherwise.
    The environment variable `VSGAN_PRECISION` overrides the choice.
    """
    env = os.environ.get("VSGAN_PRECISION")
    return resolve_precision(env) if env else _hardware_precision()


@functools.cache
def _hardware_precision() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        try:
            capability = tf.config.experimental.get_device_details(gpus[0]).get(
                "compute_capability", (0, 0)
            )
        except Exception:  # a device without details: stay exact
            capability = (0, 0)
        if capability >= (8, 0):
            return "bfloat16"
        return "float16" if capability >= (7, 0) else "float32"
    return "bfloat16" if _cpu_has_bf16() else "float32"


def resolve_precision(precision: str | None) -> str:
    """ "float32", "bfloat16" or "float16" for `precision` (None: `default_precision()`).

    Example:
    >>> resolve_precision("mixed_bfloat16")
    'bfloat16'
    """
    if precision is None:
        return default_precision()
    name = _PRECISION_ALIASES.get(str(precision).lower(), str(precision).lower())
    if name not in PRECISIONS:
        raise InputError(
            f"precision={precision!r} is not known. Fix: give one of {', '.join(PRECISIONS)}, "
            "or None for the fastest exact-enough one on this machine."
        )
    return name


def _compute_dtype(generator) -> str:
    """The compute dtype of the generator's convolutions (what it was built with)."""
    import keras

    for layer in generator._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Conv2DTranspose):
            return layer.compute_dtype
    return generator.compute_dtype


class _Passes:
    """The generator's traced passes in one precision, and the split for sampling.

    A pass in another precision than the generator was built in does not copy the
    model: while TensorFlow traces the pass, the generator's layers compute in that
    precision (their float32 variables are cast as under a mixed policy), and the traced
    graph keeps it; the layers are put back right after, so the caller's model, its
    weights and the global Keras policy are untouched, and weight updates show up in the
    next pass. Instance-norm statistics are float32 in every precision; outputs are
    float32. (Not meant for a model another thread traces at the same moment.)
    """

    def __init__(self, generator, precision: str):
        import keras
        import tensorflow as tf

        from vsgan.models.generator import split_at_dropout

        policy = keras.dtype_policies.get(_POLICIES[precision])
        switch = _compute_dtype(generator) != policy.compute_dtype
        layers = (
            [
                layer
                for layer in generator._flatten_layers(include_self=False, recursive=True)
                if not isinstance(layer, keras.Model) and type(layer).__name__ not in _KEEP_DTYPE
            ]
            if switch
            else []
        )

        def traced(fn):
            def body(*args):
                saved = [layer._dtype_policy for layer in layers]
                try:
                    for layer in layers:
                        layer._dtype_policy = policy
                    return keras.tree.map_structure(lambda t: tf.cast(t, tf.float32), fn(*args))
                finally:
                    for layer, old in zip(layers, saved):
                        layer._dtype_policy = old

            return tf.function(body, reduce_retracing=True)

        self.forward = traced(lambda x: generator(x, training=False))
        self.random_forward = traced(lambda x: generator(x, training=True))
        try:
            split = split_at_dropout(generator)
        except Exception:  # not a functional graph: sample whole passes
            split = None
        self.prefix = self.rest = None
        if split is not None:
            prefix, rest = split
            self.prefix = traced(lambda x: keras.tree.flatten(prefix(x, training=False)))
            self.rest = traced(lambda feats: rest(list(feats), training=True))

    def sample(
        self, x: np.ndarray, n: int, batch_size: int, reuse: dict | None = None
    ) -> np.ndarray:
        """(n, B, ...) outputs with dropout on; the prefix runs once per image.

        `reuse` (a dict) keeps the prefix features of the last `x` (by identity), so
        several calls for more samples of the same batch run the prefix only once.
        """
        import tensorflow as tf

        if self.prefix is None:
            stacked = np.concatenate([x] * n, axis=0)
            outs = [
                np.asarray(self.random_forward(stacked[i : i + batch_size]))
                for i in range(0, len(stacked), batch_size)
            ]
            return np.concatenate(outs).reshape(n, *x.shape[:3], -1)
        if reuse is not None and reuse.get("x") is x:
            feats = reuse["features"]
        else:
            parts = [self.prefix(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
            feats = [tf.concat(p, axis=0) if len(p) > 1 else p[0] for p in zip(*parts)]
            if reuse is not None:
                reuse.update(x=x, features=feats)
        total, outs = n * len(x), []
        for start in range(0, total, batch_size):
            # Sample-major order, as n stacked copies of the batch.
            index = np.arange(start, min(start + batch_size, total)) % len(x)
            outs.append(np.asarray(self.rest([tf.gather(f, index) for f in feats])))
        return np.concatenate(outs).reshape(n, *x.shape[:3], -1)


class _PassCache:
    """Holds a generator's `_Passes` per precision; set with `object.__setattr__` so Keras
    neither tracks it as a sub-layer nor saves it (its saver skips plain objects)."""

    def __init__(self):
        self.by_precision: dict[str, _Passes] = {}


def _passes(generator, precision: str) -> _Passes | None:
    """The cached passes of a Keras generator; None for a plain callable."""
    import keras

    if not isinstance(generator, keras.Model):
        return None
    cache = generator.__dict__.get("_vsgan_passes")
    if cache is None:
        cache = _PassCache()
        object.__setattr__(generator, "_vsgan_passes", cache)
    if precision not in cache.by_precision:
        cache.by_precision[precision] = _Passes(generator, precision)
    return cache.by_precision[precision]


def sample(model, x, n: int = 10, batch_size: int = 16, precision: str | None = None) -> np.ndarray:
    """Draws `n` Monte-Carlo-dropout predictions per image, in batched passes.

    The layers before the first dropout (stem and downsampling) give the same result for
    every sample: they run once per image, and their output is repeated for the samples.

    Args:
        model: a `vsgan.Pix2PixHD`.
        x: (B, H, W, C) or (H, W, C) input in model units.
        n: number of samples.
        batch_size: images per generator call.
        precision: "float32", "bfloat16" or "float16"; None picks the machine's fast one
            (see `default_precision`).

    Returns:
        float32 array (n, B, H, W, out_channels). Without dropout all samples are equal:
        the generator is deterministic.

    Example:
    >>> from vsgan import Pix2PixHD
    >>> model = Pix2PixHD(1, 1, ngf=8, n_downsample=2, n_blocks=1, dropout=0.5)
    >>> sample(model, np.zeros((16, 16, 1)), n=3).shape
    (3, 1, 16, 16, 1)
    """
    x = check_batch(model, x)
    n, batch_size = _whole(n, "n"), _whole(batch_size, "batch_size")
    _at_most(n, "n", MAX_SAMPLES)
    return _sample(model, x, n, batch_size, resolve_precision(precision))


def _sample(model, x, n, batch_size, precision, reuse=None) -> np.ndarray:
    """`sample` on a checked batch; `reuse` as in `_Passes.sample`."""
    passes = _passes(model.generator, precision)
    if passes is not None:
        out = passes.sample(x, n, batch_size, reuse)
        return out.reshape(n, *x.shape[:3], model.out_channels)
    generator = model.generator  # a plain callable (tests, wrappers)
    stacked = np.concatenate([x] * n, axis=0)
    outs = [
        np.asarray(generator(stacked[i : i + batch_size], training=True), np.float32)
        for i in range(0, len(stacked), batch_size)
    ]
    return np.concatenate(outs).reshape(n, *x.shape[:3], model.out_channels)


def _runner(model, samples: int, precision: str):
    """fn(x (B, H, W, C) float32, n) -> (n, B, H, W, C_out) model-unit outputs."""
    generator = model.generator
    if samples == 1:
        passes = _passes(generator, precision)
        if passes is None:

            def run(x, n):
                return np.asarray(generator.predict_on_batch(x), np.float32)[None]

        else:

            def run(x, n):
                return np.asarray(passes.forward(x))[None]

        return run

    reuse: dict = {}  # the prefix runs once per tile batch and view, for all sample chunks

    def run(x, n):
        # One generator call for all n samples of the batch.
        return _sample(model, x, n, n * len(x), precision, reuse)

    return run


IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".npy", ".h5", ".hdf5")


def _image_files(folder) -> list:
    from vsgan.io.channels import natural_key

    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: natural_key(p.name),
    )


def _select(model, path, raw: np.ndarray, names, channels) -> np.ndarray:
    """The model's input channels of one (possibly stacked) file, matched by name."""
    from vsgan.io.channels import match_channels

    wanted = list(model.input_channels)
    if channels:
        if len(channels) != raw.shape[-1]:
            raise InputError(
                f"{path}: --channels names {len(channels)} channel(s) {list(channels)}, the file "
                f"holds {raw.shape[-1]}. Fix: name every channel of the file, in order."
            )
        names = list(channels)
    if names:
        return raw[..., match_channels(wanted, names, exact=False, where=str(path))]
    if raw.shape[-1] == len(wanted) == 1:
        return raw
    if raw.shape[-1] == len(wanted):
        raise InputError(
            f"{path}: holds {raw.shape[-1]} unnamed channels; the model takes {wanted} and "
            "channels are never matched by position. Fix: give --channels with the names of the "
            "file's channels in order, save it as OME-TIFF / ImageJ TIFF with channel labels, "
            "or give one file per channel named after it."
        )
    return check_field(raw, len(wanted))  # raises, naming the channel counts


def _planes_field(model, name: str, files: list, exact: bool):
    """One field from single-channel files named after the model's channels, or None."""
    from vsgan.io.channels import ChannelMatchError, channel_key, match_channels
    from vsgan.io.readers import read_image

    wanted = list(model.input_channels)
    if len(wanted) == 1:
        hits = [f for f in files if channel_key(f) == channel_key(wanted[0])]
        files = hits if len(hits) == 1 else []
        if not files:
            return None
    try:
        idx = match_channels(wanted, files, exact=exact, where=name)
    except ChannelMatchError:
        if exact and len(files) == len(model.input_channels):
            raise
        return None
    planes = [read_image(files[i]) for i in idx]
    if any(p.shape[-1] != 1 for p in planes):
        return None
    return name, np.concatenate(planes, axis=-1)


def _file_fields(model, files: list, channels) -> list[tuple[Any, np.ndarray]]:
    from vsgan.io.channels import match_channels
    from vsgan.io.readers import read_image_with_names

    out = []
    for path in files:
        raw, names = read_image_with_names(path)
        if raw.shape[-1] == 1 < int(model.in_channels) and not names and not channels:
            # Single planes that are not named after the model's channels: say which are wanted.
            match_channels(list(model.input_channels), files, exact=True, where=str(path.parent))
        out.append((path, _select(model, path, raw, names, channels)))
    return out


def read_fields(
    inputs: list[str], model, channels: list[str] | None = None
) -> list[tuple[str, np.ndarray]]:
    """(name, raw (H, W, C_in)) for every input file, folder or zarr store, each checked.

    Channels are matched by name (`vsgan.io.channels`), never by position or text order:

    - files that each hold one plane, named after the model's channels (``bf_focus.tif``,
      ``phase_z3.tif`` for ``phase_z03``), make one field together; in a folder, files that
      match no channel (e.g. the targets) are left out;
    - a folder of such files is one field; a folder of sub-folders is one field per
      sub-folder;
    - a stacked file (OME-TIFF, ImageJ TIFF with labels, OME-Zarr) gives its channels by
      the names stored in it, or by `channels` (the file's channel names in order);
    - for a one-channel model, every file is a field.

    Anything that does not map one-to-one onto `model.input_channels` raises an `InputError`
    listing the model's channels and the files.
    """
    from pathlib import Path

    multi = int(model.in_channels) > 1
    fields: list[tuple[str, np.ndarray]] = []
    loose: list[Path] = []
    for item in map(Path, inputs):
        if not (item.is_dir() and item.suffix != ".zarr"):
            loose.append(item)
            continue
        folders = (
            [item]
            if _image_files(item)
            else [d for d in sorted(item.iterdir()) if d.is_dir() and _image_files(d)]
        )
        if not folders:
            raise InputError(f"{item}: no images (TIFF, PNG, NPY, HDF5) in it or its sub-folders.")
        for folder in folders:
            files = _image_files(folder)
            # One-channel model: every file is a field, unless one is named after the channel.
            field = _planes_field(model, folder.name, files, exact=False)
            if field is not None:
                fields.append((folder, field[1]))  # the folder is the field
            else:
                fields += _file_fields(model, files, channels)
    if loose:
        missing = [p for p in loose if not p.exists()]
        if missing:
            raise InputError(f"{missing[0]}: no such file or folder. Fix: check the path.")
        field = None
        if multi and len(loose) > 1 and not channels:
            name = os.path.commonprefix([p.stem for p in loose]).rstrip("_-. ") or "field"
            field = _planes_field(model, name, loose, exact=True)
        if field is not None:  # the planes of one field: named by their common prefix
            fields.append((loose[0].with_name(field[0]), field[1]))
        else:
            fields += _file_fields(model, loose, channels)
    if not fields:
        raise InputError(f"no images found in {inputs}: give image files or folders of them.")
    # One distinct output name per field: a/img.npy and b/img.npy give a_img and b_img.
    fields = list(zip(output_names([path for path, _ in fields]), [x for _, x in fields]))
    for name, raw in fields:
        try:
            check_field(raw, int(model.in_channels))
        except InputError as error:
            raise InputError(f"{name}: {error}") from None
    return fields


def output_names(paths: list) -> list[str]:
    """One distinct output name per input path: its stem, else `<folder>_<stem>`, etc.

    Two inputs with one file name (`a/img.tif`, `b/img.tif`) or one stem (`img.tif`,
    `img.png`) never share an output; `InputError` if no distinct name is found.
    """
    from collections import Counter

    def stem(p):
        return p.name[: -len(".zarr")] if p.suffix == ".zarr" else p.stem

    candidates = [
        lambda p: stem(p),
        lambda p: f"{p.parent.name}_{stem(p)}",
        lambda p: f"{p.parent.name}_{p.name.replace('.', '_')}",
    ]
    names = [stem(p) for p in paths]
    for make in candidates[1:]:
        counts = Counter(names)
        if all(c == 1 for c in counts.values()):
            break
        names = [make(p) if counts[n] > 1 else n for p, n in zip(paths, names)]
    counts = Counter(names)
    clash = [str(p) for p, n in zip(paths, names) if counts[n] > 1]
    if clash:
        raise InputError(
            f"inputs {clash[:4]} would write outputs of the same name. Fix: predict them into "
            "separate -o folders, or rename them."
        )
    return names


def stack_named(model, planes) -> np.ndarray:
    """``{channel name: (H, W) array}`` -> (H, W, C_in) in the model's channel order.

    Names are matched as `vsgan.io.channels.match_channels` does (case, punctuation and
    leading zeros ignored); every model channel needs exactly one entry.
    """
    from vsgan.io.channels import match_channels

    keys = list(planes)
    idx = match_channels(list(model.input_channels), keys, exact=True, where="stain")
    arrays = []
    for i in idx:
        a = np.asarray(planes[keys[i]])
        if a.ndim == 3 and a.shape[-1] == 1:
            a = a[..., 0]
        if a.ndim != 2:
            raise InputError(
                f"stain: channel {keys[i]!r} has shape {a.shape}; give one (H, W) plane per name."
            )
        arrays.append(a)
    if len({a.shape for a in arrays}) > 1:
        raise InputError(
            f"stain: the planes differ in size {[a.shape for a in arrays]}; give planes of one "
            "field."
        )
    return np.stack(arrays, axis=-1)


class _Moments:
    """Running mean and sum of squared deviations over sample chunks (Chan et al.)."""

    def __init__(self):
        self.count, self.mean, self.m2 = 0, None, None

    def update(self, y: np.ndarray):  # y: (n, ...) float64
        n, mean = y.shape[0], y.mean(0)
        m2 = ((y - mean) ** 2).sum(0)
        if self.count == 0:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * (n / total)
        self.m2 += m2 + delta**2 * (self.count * n / total)
        self.count = total


def stain(
    model: Any,
    image,
    *,
    samples: int = 1,
    tile_size: int | None = None,
    overlap: int | None = None,
    tta: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
    callback: Callable[[int, int], None] | None = None,
    precision: str | None = None,
) -> StainResult:
    """Virtually stains a whole raw label-free field.

    The input is normalised by the model's preprocessor (`model.preprocessor`, a
    `vsgan.data.StainPreprocessor`; a per-field normalisation is fitted once on the whole
    field, from at most a million pixels per channel), and the output is de-normalised by
    it back into stain units.

    Args:
        model: a `vsgan.Pix2PixHD` (or any object with `generator`, `in_channels`,
            `out_channels`, `input_channels`, `multiple`, `dropout` and `preprocessor`).
        image: raw field, (H, W) or (H, W, C_in) in the model's channel order, any numeric
            dtype, any size; or a dict ``{channel name: (H, W) plane}`` matched by name to
            `model.input_channels` (e.g. ``{"bf_focus": a, "bf_plus10um": b, ...}``).
        samples: Monte-Carlo-dropout passes per tile (dropout on); 1 runs the generator once
            deterministically.
        tile_size: tile side in pixels (default 512), rounded up to `model.multiple`.
            Fields no larger than a tile run in one pass.
        overlap: minimum overlap of neighbouring tiles (default a quarter tile).
        tta: also average the 8 flips and 90-degree rotations of each tile; they count as
            samples for the standard deviation.
        batch_size: images per generator call (tiles x samples); bounds the memory used.
        progress: show a tqdm progress bar over tiles.
        callback: called as `callback(tiles_done, tiles_total)` after each batch of tiles
            (progress bars of GUIs such as the napari widget).
        precision: compute precision of the generator: "float32", "bfloat16" or
            "float16". None (default) picks the fastest one this machine computes
            natively (`default_precision()`: bfloat16 on CPUs with AVX512-BF16 or AMX and
            on Ampere or newer GPUs, float32 elsewhere). The model itself and the global
            Keras policy are left as they are; outputs are float32 either way.

    Returns:
        a `StainResult` with `.mean` and `.std` (None when samples == 1 and not tta).

    Example:
    >>> import numpy as np
    >>> from vsgan import Pix2PixHD
    >>> from vsgan.inference.stain import stain
    >>> model = Pix2PixHD(1, 1, ngf=8, n_downsample=2, n_blocks=1, dropout=0.2)
    >>> field = np.random.default_rng(0).integers(0, 4000, (100, 150), dtype=np.uint16)
    >>> result = stain(model, field, samples=4, tile_size=64)
    >>> result.mean.shape, result.std.shape
    ((100, 150, 1), (100, 150, 1))
    """
    samples, batch_size = _whole(samples, "samples"), _whole(batch_size, "batch_size")
    _at_most(samples, "samples", MAX_SAMPLES)
    _at_most(batch_size, "batch_size", 2**16)
    if isinstance(image, Mapping):
        image = stack_named(model, image)
    precision = resolve_precision(precision)
    multiple = int(getattr(model, "multiple", 1) or 1)
    raw = check_field(image, int(model.in_channels))
    if samples > 1 and not getattr(model, "dropout", 0.0):
        warnings.warn(
            "samples > 1 but the model has no dropout: every sample is the same and the std is "
            "0 (only test-time augmentation adds spread).",
            stacklevel=2,
        )

    height, width = raw.shape[:2]
    grid = tile_grid(height, width, tile_size, overlap, multiple)
    (th, tw), (hp, wp) = grid.tile_shape, grid.padded_shape
    preprocessor = model.preprocessor
    to_model, to_target = preprocessor.for_field(raw).normalize, preprocessor.denormalize_target
    if (hp, wp) != (height, width):
        # Mirror like the generator's own PadToMultiple, so a small field stains the same
        # whether or not it is padded here (only fields smaller than a tile are padded).
        raw = np.pad(raw, ((0, hp - height), (0, wp - width), (0, 0)), mode="symmetric")

    views = _VIEWS if tta else _VIEWS[:1]
    with_std = samples > 1 or tta
    chunk = min(samples, batch_size)  # samples of one tile per generator call
    tiles_per_call = max(1, batch_size // chunk)
    run = _runner(model, samples, precision)

    c_out = int(model.out_channels)
    mean_acc = np.zeros((hp, wp, c_out), np.float32)
    var_acc = np.zeros((hp, wp, c_out), np.float32) if with_std else None
    weight_acc = np.zeros((hp, wp), np.float32)
    wy, wx = _axis_weights(grid.y_starts, th), _axis_weights(grid.x_starts, tw)
    # (row, column, weight-row index, weight-column index) of every tile.
    tiles = [
        (y0, x0, i, j) for i, y0 in enumerate(grid.y_starts) for j, x0 in enumerate(grid.x_starts)
    ]

    with tqdm(total=len(tiles), disable=not progress, desc="stain", unit="tile") as bar:
        for first in range(0, len(tiles), tiles_per_call):
            batch = tiles[first : first + tiles_per_call]
            xb = np.stack([raw[y0 : y0 + th, x0 : x0 + tw] for y0, x0, _, _ in batch])
            xb = np.asarray(to_model(xb), np.float32)
            moments = _Moments()
            for view in views:
                xv = _forward(xb, view)
                for done in range(0, samples, chunk):
                    y = run(xv, min(chunk, samples - done))
                    y = to_target(_inverse(y, view)).astype(np.float64)
                    moments.update(y)
            var = moments.m2 / (moments.count - 1) if with_std else None
            for k, (y0, x0, i, j) in enumerate(batch):
                w = np.outer(wy[i], wx[j])
                region = (slice(y0, y0 + th), slice(x0, x0 + tw))
                mean_acc[region] += w[..., None] * moments.mean[k]
                if with_std:
                    # Blend variances (not raw moments): the tiles' disagreement in the
                    # overlap is not sampling spread and would draw the grid into the std map.
                    var_acc[region] += w[..., None] * var[k]
                weight_acc[region] += w
            bar.update(len(batch))
            if callback is not None:
                callback(first + len(batch), len(tiles))

    weight_acc = weight_acc[:height, :width, None]
    mean = np.ascontiguousarray(mean_acc[:height, :width])
    mean /= weight_acc
    std = None
    if with_std:
        std = np.ascontiguousarray(var_acc[:height, :width])
        std /= weight_acc
        np.sqrt(np.maximum(std, 0.0, out=std), out=std)
    return StainResult(
        mean=mean,
        std=std,
        samples=samples,
        views=len(views),
        tiles=len(tiles),
        tile_shape=(th, tw),
        calibration=getattr(model, "calibration", None),
    )
