"""Intensity normalisation that travels with the model: raw <-> model units, per channel.

``y = (raw - offset) / scale``, so it is affine and exactly invertible. The statistics are fitted
once on the training fields (or computed per field for inputs), stored in the dataset spec and in
the trained model's config as ``get_config()`` dicts, and inverted at prediction time so stains
come back in the target's raw intensity units.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from vsgan.errors import InputError

METHODS = ("percentile", "meanstd", "median_iqr", "fixed", "identity")
_MAX_SAMPLES_PER_FIELD = 1_000_000  # pixels per channel per field used for quantiles


def _as_list(v) -> list[float] | None:
    if v is None:
        return None
    return [float(a) for a in np.asarray(v, dtype=np.float64).ravel()]


def _safe_scale(scale):
    # A constant channel has zero spread: leave it centred rather than dividing by zero.
    return np.where(np.abs(scale) > 1e-12, scale, 1.0)


def default_input() -> Normalization:
    """The one default for label-free inputs: each field's own 1st-99.8th percentiles -> [-1, 1].

    VisCy's per-FOV input normalisation: robust to illumination and exposure changes between
    fields, and needs no statistics, so a model without any still sees sensible inputs.
    """
    return Normalization("percentile", per_field=True, low=1.0, high=99.8)


# Targets of new trainings: the 1st..99.8th percentiles map to [-1, -0.2], so a stain twice
# as bright as the training's 99.8th percentile comes out at +0.6, inside the tanh range.
TARGET_HEADROOM = 2.5


class Normalization:
    """raw -> model units: ``(raw - offset) / scale``, per channel. Affine, so invertible.

    Args:
        method: ``"percentile"`` (the `low`..`high` percentiles map to [-1, 1]), ``"meanstd"``
            (zero mean, unit std), ``"median_iqr"`` (median 0, inter-quartile range 1),
            ``"fixed"`` (`offset` and `scale` given) or ``"identity"``.
        per_field: compute the statistics from each image itself at `normalize` time (VisCy's
            per-FOV input normalisation) instead of dataset-level ones from `fit`. Such a
            normalisation cannot be inverted, so use it for inputs only.
        offset: per-channel offsets (a scalar or a list), for ``"fixed"`` or already fitted stats.
        scale: per-channel scales, likewise.
        low: lower percentile for ``"percentile"``.
        high: upper percentile for ``"percentile"``.
        headroom: for ``"percentile"``, the `low` percentile maps to -1 and
            ``low + headroom * (high - low)`` to +1, so signal brighter than the training's
            `high` percentile stays representable in the generator's tanh range (targets:
            `TARGET_HEADROOM`, where twice the high percentile maps well inside it). 1 maps
            `low`..`high` onto [-1, 1].

    Example:
    >>> import numpy as np
    >>> norm = Normalization.fixed(4400)          # the seed's target scaling
    >>> norm.normalize(np.array([0.0, 2200.0, 4400.0])[:, None, None]).ravel().tolist()
    [-1.0, 0.0, 1.0]
    >>> norm = Normalization("percentile").fit([np.random.rand(32, 32, 2)])
    >>> y = norm.normalize(np.random.rand(32, 32, 2))
    """

    def __init__(
        self,
        method: str = "percentile",
        *,
        per_field: bool = False,
        offset: float | Sequence[float] | None = None,
        scale: float | Sequence[float] | None = None,
        low: float = 1.0,
        high: float = 99.8,
        headroom: float = 1.0,
    ):
        if method not in METHODS:
            raise InputError(f"unknown normalisation method {method!r}; use one of {METHODS}.")
        if not 0.0 <= low < high <= 100.0:
            raise InputError(f"percentiles need 0 <= low < high <= 100, got {low}, {high}.")
        if method == "fixed" and (offset is None or scale is None):
            raise InputError(
                "method='fixed' needs offset= and scale= (or use Normalization.fixed(constant))."
            )
        if method == "identity":
            offset = 0.0 if offset is None else offset
            scale = 1.0 if scale is None else scale
        if (offset is None) != (scale is None):
            raise InputError("give both offset= and scale=, or neither.")
        self.method = method
        self.per_field = bool(per_field)
        self.offset = _as_list(offset)
        self.scale = _as_list(scale)
        if self.scale is not None and any(s == 0 for s in self.scale):
            raise InputError(f"scale must be non-zero, got {self.scale}.")
        self.low = float(low)
        self.high = float(high)
        if not (isinstance(headroom, int | float) and 1.0 <= headroom <= 100.0):
            raise InputError(f"headroom={headroom!r}: give a number from 1 (none) to 100.")
        self.headroom = float(headroom)

    @classmethod
    def fixed(cls, constant: float | Sequence[float], channels: int = 1) -> Normalization:
        """The seed's global min-max scaling ``raw / constant * 2 - 1`` (e.g. 4400 for nuclei).

        Args:
            constant: the raw value that maps to +1 (0 maps to -1); a scalar or one per channel.
            channels: number of channels when `constant` is a scalar.

        Returns:
            A ``"fixed"`` normalisation, inverted by ``(y + 1) / 2 * constant``.
        """
        c = np.atleast_1d(np.asarray(constant, np.float64))
        if c.size == 1:
            c = np.repeat(c, channels)
        if np.any(c <= 0):
            raise InputError(f"the fixed scaling constant must be positive, got {constant}.")
        return cls("fixed", offset=c / 2.0, scale=c / 2.0)

    @property
    def is_fitted(self) -> bool:
        """True when `normalize` can run (statistics known, or computed per field)."""
        return self.per_field or self.offset is not None

    # -- statistics -------------------------------------------------------------------------------

    def _stats_np(self, x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        x = x.astype(np.float64, copy=False)
        if self.method == "percentile":
            lo, hi = np.percentile(x, [self.low, self.high], axis=axes, keepdims=True)
            half = self.headroom * (hi - lo) / 2.0
            return lo + half, half
        if self.method == "meanstd":
            return x.mean(axis=axes, keepdims=True), x.std(axis=axes, keepdims=True)
        q25, q50, q75 = np.percentile(x, [25.0, 50.0, 75.0], axis=axes, keepdims=True)
        return q50, q75 - q25

    def fit(self, fields: Iterable[np.ndarray]) -> Normalization:
        """Computes dataset-level statistics over `fields`.

        Quantiles use at most a million evenly strided pixels per channel per field; mean and
        std use every pixel.

        Args:
            fields: iterable of (H, W, C) arrays (raw intensities).

        Returns:
            self, fitted.
        """
        if self.method in ("fixed", "identity"):
            return self
        samples: list[np.ndarray] = []
        count, total, total_sq = 0, 0.0, 0.0
        n_channels = None
        for field in fields:
            field = np.asarray(field)
            if field.ndim == 2:
                field = field[..., None]
            flat = field.reshape(-1, field.shape[-1])
            if n_channels is None:
                n_channels = flat.shape[1]
            elif flat.shape[1] != n_channels:
                raise InputError(
                    f"fit: fields have {n_channels} and {flat.shape[1]} channels; all must match."
                )
            if self.method == "meanstd":
                f64 = flat.astype(np.float64)
                count += f64.shape[0]
                total = total + f64.sum(0)
                total_sq = total_sq + (f64**2).sum(0)
            else:
                step = max(1, flat.shape[0] // _MAX_SAMPLES_PER_FIELD)
                samples.append(flat[::step].astype(np.float32))
        if n_channels is None:
            raise InputError("fit: no fields given; pass at least one (H, W, C) array.")
        if self.method == "meanstd":
            mean = total / count
            offset, scale = mean, np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
        else:
            offset, scale = self._stats_np(np.concatenate(samples, 0), (0,))
        if not (np.all(np.isfinite(offset)) and np.all(np.isfinite(scale))):
            raise InputError("fit: the fields contain NaN or inf; clean them first.")
        self.offset = _as_list(offset)
        self.scale = _as_list(_safe_scale(scale))
        return self

    def _params(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        if self.offset is None:
            raise InputError(
                f"Normalization({self.method!r}) is not fitted: call .fit(fields) on the training "
                "fields first, or pass offset= and scale=."
            )
        offset = np.asarray(self.offset, np.float32)
        scale = np.asarray(self.scale, np.float32)
        if offset.size not in (1, c):
            raise InputError(
                f"normalisation holds statistics for {offset.size} channel(s), the image has {c}."
            )
        return offset, scale

    # -- numpy ------------------------------------------------------------------------------------

    def normalize(self, x) -> np.ndarray:
        """raw (..., H, W, C), any dtype -> float32 model units."""
        x = np.asarray(x)
        if x.ndim < 3:
            raise InputError(f"normalize expects (..., H, W, C), got shape {x.shape}.")
        if self.per_field and self.method not in ("fixed", "identity"):
            offset, scale = self._stats_np(x, (-3, -2))
            return ((x - offset) / _safe_scale(scale)).astype(np.float32)
        offset, scale = self._params(x.shape[-1])
        return ((x.astype(np.float32) - offset) / scale).astype(np.float32)

    def _check_invertible(self):
        if self.per_field and self.method not in ("fixed", "identity"):
            raise InputError(
                "a per_field normalisation cannot be inverted (its statistics came from each "
                "input image); use a dataset-level one (per_field=False) for targets."
            )

    def denormalize(self, y) -> np.ndarray:
        """model units (..., H, W, C) -> raw units (float32); the inverse of `normalize`."""
        self._check_invertible()
        y = np.asarray(y, np.float32)
        offset, scale = self._params(y.shape[-1])
        return (y * scale + offset).astype(np.float32)

    # -- TensorFlow -------------------------------------------------------------------------------

    def _stats_tf(self, x):
        import tensorflow as tf

        shape = tf.shape(x)
        n = shape[-3] * shape[-2]
        # (..., C, H*W) sorted: percentiles by linear interpolation, as numpy does.
        flat = tf.reshape(x, tf.concat([shape[:-3], [n, shape[-1]]], 0))
        if self.method == "meanstd":
            mean = tf.reduce_mean(flat, axis=-2, keepdims=True)
            std = tf.math.reduce_std(flat, axis=-2, keepdims=True)
            return mean[..., None, :], std[..., None, :]
        srt = tf.sort(tf.linalg.matrix_transpose(flat), axis=-1)

        def q(p):
            pos = tf.cast(n - 1, tf.float64) * (p / 100.0)
            lo = tf.cast(tf.floor(pos), tf.int32)
            hi = tf.minimum(lo + 1, n - 1)
            frac = tf.cast(pos - tf.floor(pos), x.dtype)
            a = tf.gather(srt, lo, axis=-1)
            b = tf.gather(srt, hi, axis=-1)
            return (a + (b - a) * frac)[..., None, None, :]

        if self.method == "percentile":
            lo, hi = q(self.low), q(self.high)
            half = self.headroom * (hi - lo) / 2.0
            return lo + half, half
        return q(50.0), q(75.0) - q(25.0)

    def normalize_tf(self, x):
        """`normalize` in TensorFlow ops (for serving functions); returns float32."""
        import tensorflow as tf

        x = tf.cast(x, tf.float32)
        if self.per_field and self.method not in ("fixed", "identity"):
            offset, scale = self._stats_tf(x)
            scale = tf.where(tf.abs(scale) > 1e-12, scale, tf.ones_like(scale))
            return (x - offset) / scale
        offset, scale = self._params(int(x.shape[-1]) if x.shape[-1] is not None else 1)
        return (x - tf.constant(offset)) / tf.constant(scale)

    def denormalize_tf(self, y):
        """`denormalize` in TensorFlow ops; returns float32 raw units."""
        import tensorflow as tf

        self._check_invertible()
        y = tf.cast(y, tf.float32)
        offset, scale = self._params(int(y.shape[-1]) if y.shape[-1] is not None else 1)
        return y * tf.constant(scale) + tf.constant(offset)

    # -- serialisation ----------------------------------------------------------------------------

    def get_config(self) -> dict:
        """A JSON-able dict; `from_config` rebuilds an equal normalisation."""
        return {
            "method": self.method,
            "per_field": self.per_field,
            "offset": self.offset,
            "scale": self.scale,
            "low": self.low,
            "high": self.high,
            # Written only when set, so configs saved before it existed compare equal.
            **({"headroom": self.headroom} if self.headroom != 1.0 else {}),
        }

    @classmethod
    def from_config(cls, config: dict) -> Normalization:
        """Rebuilds a normalisation from `get_config()`'s dict."""
        return cls(**config)

    def __eq__(self, other) -> bool:
        return isinstance(other, Normalization) and self.get_config() == other.get_config()

    def __repr__(self) -> str:
        stats = f", offset={self.offset}, scale={self.scale}" if self.offset is not None else ""
        return f"Normalization({self.method!r}, per_field={self.per_field}{stats})"


class StainPreprocessor:
    """Raw intensities -> model units for the label-free input; model output -> stain units.

    The one home of normalisation: training data, `vsgan.stain`, export and evaluation all
    use the preprocessor the model owns (as keras-hub tasks own theirs), and it is stored in
    the model's config, so a saved model is self-describing.

    Args:
        input: `Normalization` (or its config dict) of the label-free channels. Default:
            each field's own 1st-99.8th percentiles map to [-1, 1] (VisCy's per-FOV input
            normalisation), so a model without statistics still sees sensible inputs.
        target: `Normalization` (or its config dict) of the stains; must be invertible
            (dataset-level). Default: the generator's tanh range [-1, 1] comes back as [0, 1].

    Example:
    >>> import numpy as np
    >>> pre = StainPreprocessor(target=Normalization.fixed(4400))
    >>> pre.denormalize_target(np.zeros((2, 2, 1))).ravel().tolist()
    [2200.0, 2200.0, 2200.0, 2200.0]
    >>> StainPreprocessor.from_config(pre.get_config()) == pre
    True
    >>> StainPreprocessor.from_config({"inputs": None})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    vsgan.errors.InputError: normalization has unknown key(s) ['inputs']; ...
    """

    KEYS = ("input", "target")

    def __init__(
        self,
        input: Normalization | dict | None = None,
        target: Normalization | dict | None = None,
    ):
        self.input = _coerce(input, "input") or default_input()
        self.target = _coerce(target, "target") or Normalization("fixed", offset=0.5, scale=0.5)
        try:
            self.target._check_invertible()
        except InputError as error:
            raise InputError(f"normalization target: {error}") from None

    @classmethod
    def coerce(cls, value: StainPreprocessor | dict | None) -> StainPreprocessor:
        """A preprocessor from itself, its config dict (`{"input": ..., "target": ...}`) or None."""
        if isinstance(value, StainPreprocessor):
            return value
        if value is None:
            return cls()
        return cls.from_config(value)

    def for_field(self, raw: np.ndarray) -> Normalization:
        """The input normalisation with statistics fixed for this raw (H, W, C) field.

        A per-field normalisation is fitted on the whole field once (quantiles from at most
        a million pixels per channel), so tiles of the field are normalised alike.
        """
        norm = self.input
        if norm.per_field and norm.method not in ("fixed", "identity"):
            return Normalization(norm.method, low=norm.low, high=norm.high).fit([raw])
        return norm

    def normalize_input(self, raw) -> np.ndarray:
        """raw label-free (..., H, W, C_in) -> float32 model units."""
        return self.input.normalize(raw)

    def normalize_target(self, raw) -> np.ndarray:
        """raw stain (..., H, W, C_out) -> float32 model units."""
        return self.target.normalize(raw)

    def denormalize_target(self, y) -> np.ndarray:
        """model output (..., H, W, C_out) -> float32 stain units."""
        return self.target.denormalize(y)

    def normalize_input_tf(self, x):
        """`normalize_input` in TensorFlow ops (for serving functions)."""
        return self.input.normalize_tf(x)

    def denormalize_target_tf(self, y):
        """`denormalize_target` in TensorFlow ops."""
        return self.target.denormalize_tf(y)

    def get_config(self) -> dict:
        return {"input": self.input.get_config(), "target": self.target.get_config()}

    @classmethod
    def from_config(cls, config: dict) -> StainPreprocessor:
        if not isinstance(config, dict):
            raise InputError(
                f"normalization must be a mapping with 'input' and 'target', not "
                f"{type(config).__name__}."
            )
        unknown = sorted(set(config) - set(cls.KEYS))
        if unknown:
            raise InputError(
                f"normalization has unknown key(s) {unknown}; it takes 'input' and 'target', "
                "each a Normalization config or None."
            )
        return cls(config.get("input"), config.get("target"))

    def __eq__(self, other) -> bool:
        return isinstance(other, StainPreprocessor) and self.get_config() == other.get_config()

    def __repr__(self) -> str:
        return f"StainPreprocessor(input={self.input!r}, target={self.target!r})"


def _coerce(value, role: str) -> Normalization | None:
    if value is None or isinstance(value, Normalization):
        return value
    if not isinstance(value, dict):
        raise InputError(
            f"normalization {role}: expected a Normalization or its config dict, "
            f"not {type(value).__name__}."
        )
    allowed = {"method", "per_field", "offset", "scale", "low", "high", "headroom"}
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise InputError(
            f"normalization {role} has unknown key(s) {unknown}; known: {sorted(allowed)}."
        )
    try:
        return Normalization.from_config(value)
    except (TypeError, ValueError) as error:
        if isinstance(error, InputError):
            raise InputError(f"normalization {role}: {error}") from None
        raise InputError(f"normalization {role}: {error}") from None
