"""Calibrated prediction intervals: split-conformal quantiles stored in the model.

A Monte-Carlo std is a spread, not an interval: mean +- 1.645 std covered 18% of the
target pixels of the ISL hold-out, not 90%. Split-conformal calibration fixes the scale
on data the model never trained on and is never tested on (the validation region):

1. stain the calibration fields (same sampling settings as later use);
2. per pixel compute the score |target - mean| / scale, where the scale is the spread
   (`"std"`: the std plus a small floor), 1 (`"none"`), or the neighbourhood shortfall
   (`"shortfall"`: max of the prediction within 31 px minus 0.9 x the prediction; it ranks
   the errors inside nuclei, where the std does not, and needs one deterministic pass);
3. per channel, and per bin of predicted intensity (equal-count bins: dim background and
   bright nuclei err differently), store the conformal quantile of the scores on a grid
   of levels.

The interval at level q is then mean +- quantile_q(bin of mean) * scale. The record is a
plain dict (`Calibration.get_config()`) kept in the model's config, so it saves and loads
with the model; `StainResult.interval(level)` applies it.

Example:
>>> rng = np.random.default_rng(0)
>>> mean = rng.random((200, 200, 1)); std = 0.05 + 0.1 * rng.random((200, 200, 1))
>>> target = mean + std * rng.standard_normal(mean.shape)
>>> cal = calibrate(mean, std, target, samples=8)
>>> lower, upper = cal.interval(mean, std, 0.9)
>>> round(float(np.mean((target >= lower) & (target <= upper))), 2)
0.9
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from typing import Any

import numpy as np

from vsgan.errors import InputError, VsganError

__all__ = [
    "GRID",
    "SCALES",
    "Calibration",
    "calibrate",
    "calibrate_model",
    "calibrate_split",
    "check_level",
    "shortfall",
    "split_fields",
]

VERSION = 1
SCALES = ("std", "none", "shortfall")
# The "shortfall" scale: how far a pixel's prediction falls below the brightest predicted
# structure within WINDOW pixels, plus ALPHA of its own value (see `shortfall`).
WINDOW, ALPHA = 31, 0.1
# Levels whose quantiles are stored; others are interpolated between them.
GRID = tuple(float(round(v, 3)) for v in np.arange(0.05, 0.951, 0.05)) + (0.975, 0.99)
# Fewest calibration pixels per intensity bin.
MIN_PER_BIN = 500


def check_level(level) -> float:
    """`level` as a float coverage in the calibrated range, or `InputError`."""
    try:
        q = float(level)
    except (TypeError, ValueError):
        q = math.nan
    if not (GRID[0] <= q <= GRID[-1]):
        raise InputError(
            f"level={level!r}: give a coverage in [{GRID[0]}, {GRID[-1]}], e.g. 0.9 for a 90% "
            "interval."
        )
    return q


@dataclasses.dataclass
class Calibration:
    """Conformal quantiles that turn a prediction (and its spread) into intervals.

    Attributes:
        scale: "std" (score = |error| / (std + floor)), "none" (score = |error|) or
            "shortfall" (score = |error| / (shortfall(mean) + floor)).
        floor: added to the std so pixels with no spread still get an interval (target units,
            per channel).
        edges: per channel, the inner edges of the predicted-intensity bins (target units).
        quantiles: per channel, per bin, the score quantile at each level of `levels`.
        levels: the nominal coverages the quantiles are stored at.
        samples: Monte-Carlo samples the spread was measured with.
        tta: whether test-time augmentation was part of the spread.
        pixels: calibration pixels per channel.
        source: what the calibration data was (free text).
    """

    scale: str
    floor: list[float]
    edges: list[list[float]]
    quantiles: list[list[list[float]]]
    levels: list[float] = dataclasses.field(default_factory=lambda: list(GRID))
    samples: int = 1
    tta: bool = False
    pixels: int = 0
    source: str = ""
    window: int = WINDOW
    alpha: float = ALPHA

    # ----------------------------------------------------------------- record
    def get_config(self) -> dict[str, Any]:
        """A JSON-ready dict (what the model's config stores)."""
        return {"version": VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_config(cls, config: dict[str, Any] | Calibration) -> Calibration:
        """The calibration of a config dict, checked (`InputError` says what is wrong)."""
        if isinstance(config, Calibration):
            return config
        if not isinstance(config, dict):
            raise InputError(
                f"calibration must be a dict (Calibration.get_config()), not {type(config)}."
            )
        config = dict(config)
        version = config.pop("version", VERSION)
        if version != VERSION:
            raise InputError(f"calibration version {version} is not {VERSION}: recalibrate.")
        known = {f.name for f in dataclasses.fields(cls)}
        if set(config) - known or {"scale", "floor", "edges", "quantiles"} - set(config):
            raise InputError(
                f"calibration keys {sorted(config)} are not those of a Calibration "
                f"({sorted(known)}). Fix: recalibrate with vsgan.inference.calibration."
            )
        cal = cls(**config)
        cal.validate()
        return cal

    def validate(self) -> None:
        if self.scale not in SCALES:
            raise InputError(f"calibration scale {self.scale!r} is not one of {SCALES}.")
        levels = np.asarray(self.levels, float)
        if levels.ndim != 1 or levels.size < 2 or np.any(np.diff(levels) <= 0):
            raise InputError("calibration levels must be increasing coverages in (0, 1).")
        n = len(self.quantiles)
        if n == 0 or len(self.edges) != n or len(self.floor) != n:
            raise InputError(
                "calibration needs one floor, edge list and quantile table per channel."
            )
        for c in range(n):
            q = np.asarray(self.quantiles[c], float)
            e = np.asarray(self.edges[c], float)
            if q.shape != (e.size + 1, levels.size) or not np.all(np.isfinite(q)):
                raise InputError(
                    f"calibration channel {c}: quantiles of shape {q.shape}, expected "
                    f"({e.size + 1}, {levels.size}) finite values."
                )
            if np.any(np.diff(q, axis=1) < 0) or np.any(q < 0):
                raise InputError(f"calibration channel {c}: quantiles must grow with the level.")
            if np.any(np.diff(e) < 0):
                raise InputError(f"calibration channel {c}: bin edges must be sorted.")

    @property
    def channels(self) -> int:
        return len(self.quantiles)

    @property
    def needs_std(self) -> bool:
        return self.scale == "std"

    # ----------------------------------------------------------------- apply
    def _scale(self, mean, std, shape) -> np.ndarray:
        if self.scale == "shortfall":
            return shortfall(mean, self.window, self.alpha) + np.asarray(self.floor, np.float32)
        if not self.needs_std:
            return np.ones(shape, np.float32)
        if std is None:
            raise InputError(
                f"this calibration scales the Monte-Carlo std (measured with {self.samples} "
                "samples), but the prediction has none. Fix: stain with "
                f"samples={self.samples}{' and tta=True' if self.tta else ''}."
            )
        s = np.asarray(std, np.float32)
        if s.shape != shape:
            raise InputError(f"std shape {s.shape} differs from mean shape {shape}.")
        return s + np.asarray(self.floor, np.float32)

    def half_width(self, mean, std, level: float) -> np.ndarray:
        """Half the interval width at `level`, per pixel (target units)."""
        q = check_level(level)
        m = np.asarray(mean, np.float32)
        m3 = m[..., None] if m.ndim == 2 else m  # (H, W) is one channel; else channels last
        if m3.shape[-1] != self.channels:
            raise InputError(
                f"prediction has {m3.shape[-1]} channel(s), the calibration {self.channels}."
            )
        std3 = None if std is None else np.asarray(std, np.float32).reshape(m3.shape)
        scale = self._scale(m3, std3, m3.shape)
        out = np.empty(m3.shape, np.float32)
        levels = np.asarray(self.levels, float)
        for c in range(self.channels):
            table = np.asarray(self.quantiles[c], float)
            per_bin = np.array([np.interp(q, levels, row) for row in table], np.float32)
            if not levels[0] <= q <= levels[-1]:
                raise InputError(f"level {q} is outside the calibrated {levels[0]}..{levels[-1]}.")
            bins = np.searchsorted(np.asarray(self.edges[c], float), m3[..., c], side="right")
            out[..., c] = per_bin[bins] * scale[..., c]
        return out[..., 0] if m.ndim == 2 else out

    def interval(self, mean, std, level: float) -> tuple[np.ndarray, np.ndarray]:
        """`(lower, upper)`: the calibrated interval at coverage `level` (target units)."""
        h = self.half_width(mean, std, level)
        m = np.asarray(mean, np.float32)
        return m - h, m + h

    def check_sampling(self, samples: int, views: int) -> None:
        """Warns when a prediction's spread was measured otherwise than at calibration."""
        tta = views > 1
        if self.needs_std and (samples != self.samples or tta != self.tta):
            warnings.warn(
                f"the calibration was made with samples={self.samples}, tta={self.tta}; this "
                f"prediction used samples={samples}, tta={tta}: the interval's coverage may "
                "differ from nominal.",
                stacklevel=3,
            )


def interval_sampling(model, level, samples: int | None = None, tta: bool = False) -> int:
    """How many Monte-Carlo samples `stain` must draw for `model`'s interval at `level`.

    Args:
        model: a calibrated `Pix2PixHD` (`model.calibration` set).
        level: the nominal coverage, e.g. 0.9.
        samples: what the user asked for (None: the calibration's own sampling).
        tta: whether test-time augmentation is on.

    Returns:
        the number of samples to pass to `stain`.

    Raises:
        VsganError: the model is not calibrated, or its calibration used test-time
            augmentation and `tta` is off.
    """
    check_level(level)
    if getattr(model, "calibration", None) is None:
        raise VsganError(
            "the model is not calibrated, so an interval has nothing to apply. Fix: train it "
            "with `vsgan train` (calibrates on the validation data) or run "
            "vsgan.inference.calibration.calibrate_model and save the model."
        )
    cal = Calibration.from_config(model.calibration)
    if cal.needs_std and cal.tta and not tta:
        raise VsganError("this model's calibration used test-time augmentation: add --tta.")
    if samples is None:
        samples = cal.samples if cal.needs_std else 1  # the sampling it was calibrated with
    return int(samples)


def shortfall(mean, window: int = WINDOW, alpha: float = ALPHA) -> np.ndarray:
    """max(mean within `window` px) - (1 - alpha) * mean, per channel of (H, W, C) maps.

    High inside predicted structures the model drew dimmer than their surroundings and on
    their rims, low in background far from any structure: GAN and L1 models alike draw
    nuclei too dim, so there the error grows as the prediction falls short.
    """
    from scipy import ndimage

    m = np.asarray(mean, np.float32)
    size = (window, window) if m.ndim == 2 else (1,) * (m.ndim - 3) + (window, window, 1)
    return ndimage.maximum_filter(m, size=size, mode="nearest") - (1 - alpha) * m


def _conformal_quantiles(scores: np.ndarray, levels) -> list[float]:
    """Split-conformal quantiles: the ceil((n + 1) q)-th smallest score for each level q."""
    s = np.sort(scores)
    n = s.size
    out = []
    for q in levels:
        k = min(int(math.ceil((n + 1) * q)), n)
        out.append(float(s[k - 1]))
    return out


def _fields(value, name: str) -> list[np.ndarray] | None:
    if value is None:
        return None
    items = list(value) if isinstance(value, list | tuple) else [value]
    out = []
    for item in items:
        a = np.asarray(item, np.float64)
        if a.ndim < 2:
            raise InputError(f"{name} has shape {a.shape}; pass (H, W, C) maps (channels last).")
        out.append(a)
    return out


def calibrate(
    mean,
    std,
    target,
    *,
    scale: str | None = None,
    bins: int = 8,
    levels=GRID,
    samples: int = 1,
    tta: bool = False,
    source: str = "",
    window: int = WINDOW,
    alpha: float = ALPHA,
) -> Calibration:
    """Fits a `Calibration` on held-back predictions and their measured targets.

    Args:
        mean: predictions in target units: one (H, W, C) / (N, H, W, C) array or a list of
            (H, W, C) fields.
        std: their spread (same shapes) or None.
        target: the measured stain (same shapes).
        scale: "std", "none" or "shortfall" (default: "std" when `std` is given, else
            "none").
        bins: equal-count bins of predicted intensity per channel (fewer when there are
            less than `MIN_PER_BIN` pixels per bin).
        levels: nominal coverages to store.
        samples: Monte-Carlo samples behind `std` (recorded; intervals warn on a mismatch).
        tta: whether `std` includes test-time augmentation (recorded).
        source: a note on the calibration data.
        window: the "shortfall" neighbourhood (pixels).
        alpha: the "shortfall" share of the pixel's own prediction.

    Returns:
        the `Calibration`.
    """
    means, targets = _fields(mean, "mean"), _fields(target, "target")
    stds = _fields(std, "std")
    scale = scale or ("std" if stds is not None else "none")
    if scale not in SCALES:
        raise InputError(f"scale={scale!r}: use one of {SCALES}.")
    if scale == "std" and stds is None:
        raise InputError('scale="std" needs the std. Fix: stain with samples > 1.')
    if not isinstance(bins, int) or bins < 1:
        raise InputError(f"bins={bins!r}: give a whole number >= 1.")
    if len(targets) != len(means) or (stds is not None and len(stds) != len(means)):
        raise InputError("give as many mean, std and target fields.")
    channels = means[0].shape[-1]
    flat_m, flat_t, flat_s = [], [], []
    for k, (m, t) in enumerate(zip(means, targets)):
        if m.shape != t.shape or m.shape[-1] != channels:
            raise InputError(f"mean {m.shape} and target {t.shape} must have one (..., C) shape.")
        if not (np.isfinite(m).all() and np.isfinite(t).all()):
            raise InputError("mean and target must be finite. Fix: mask NaN/Inf pixels out first.")
        if scale == "std":
            sc = stds[k]
            if sc.shape != m.shape:
                raise InputError(f"std shape {sc.shape} differs from mean shape {m.shape}.")
        elif scale == "shortfall":
            sc = shortfall(m, window, alpha)
        else:
            sc = np.ones_like(m)
        flat_m.append(m.reshape(-1, channels))
        flat_t.append(t.reshape(-1, channels))
        flat_s.append(sc.reshape(-1, channels))
    m2, t2, s2 = np.concatenate(flat_m), np.concatenate(flat_t), np.concatenate(flat_s)
    pixels = int(m2.shape[0])
    if pixels < 2:
        raise InputError("calibration needs at least 2 pixels.")
    floor, edges, quantiles = [], [], []
    for c in range(channels):
        mc, tc, sc = m2[:, c], t2[:, c], s2[:, c]
        err = np.abs(tc - mc)
        if scale == "none":
            f, score = 0.0, err
        else:
            # A floor of 5% of the median scale (or of the target's spread when the scale is
            # 0 everywhere) keeps pixels without spread from getting zero-width intervals.
            f = 0.05 * float(np.median(sc))
            f = f if f > 0 else 1e-3 * (float(np.std(tc)) or 1.0)
            score = err / (sc + f)
        nb = max(1, min(bins, mc.size // MIN_PER_BIN))
        inner = np.unique(np.quantile(mc, np.arange(1, nb) / nb)) if nb > 1 else np.array([])
        which = np.searchsorted(inner, mc, side="right")
        table = []
        for b in range(inner.size + 1):
            sb = score[which == b]
            table.append(_conformal_quantiles(sb if sb.size else score, levels))
        floor.append(f)
        edges.append([float(e) for e in inner])
        quantiles.append(table)
    cal = Calibration(
        scale=scale,
        floor=floor,
        edges=edges,
        quantiles=quantiles,
        levels=[float(q) for q in levels],
        samples=int(samples) if scale == "std" else 1,
        tta=bool(tta) if scale == "std" else False,
        pixels=pixels,
        source=str(source),
        window=int(window),
        alpha=float(alpha),
    )
    cal.validate()
    json.dumps(cal.get_config())  # stays JSON-ready
    return cal


def calibrate_model(
    model,
    fields,
    *,
    samples: int | None = None,
    tta: bool = False,
    scale: str | None = None,
    bins: int = 8,
    tile_size: int | None = None,
    source: str = "",
    store: bool = True,
    window: int = WINDOW,
    alpha: float = ALPHA,
) -> Calibration:
    """Stains `(raw input, target)` fields, fits a `Calibration` and stores it in the model.

    Args:
        model: a `Pix2PixHD`.
        fields: iterable of `(raw (H, W, C_in), target (H, W, C_out))` pairs in raw / target
            units: data the model was not trained on, and that is not used to test it.
        samples: Monte-Carlo samples (default 8 with dropout and the "std" scale, else 1).
        tta: include test-time augmentation in the spread.
        scale: "std", "none" or "shortfall" (default: "std" when there is a spread, else
            "none"). `vsgan train` uses the default; the `isl-nuclei` preset stores
            "shortfall" (it ranks the errors inside nuclei, see its model card).
        bins: predicted-intensity bins.
        tile_size: tile side for `stain`.
        source: a note on the calibration data, kept in the record.
        store: set `model.calibration` to the result.
        window: the "shortfall" neighbourhood (pixels).
        alpha: the "shortfall" share of the pixel's own prediction.

    Returns:
        the `Calibration`.
    """
    from vsgan.inference.stain import stain

    if samples is None:
        spread = scale in (None, "std") and getattr(model, "dropout", 0.0)
        samples = 8 if spread else 1
    means, stds, targets = [], [], []
    for raw, target in fields:
        result = stain(model, raw, samples=samples, tta=tta, tile_size=tile_size)
        t = np.asarray(target, np.float32)
        t = t[..., None] if t.ndim == 2 else t
        if t.shape != result.mean.shape:
            raise InputError(f"target shape {t.shape} differs from prediction {result.mean.shape}.")
        means.append(result.mean)
        targets.append(t)
        if result.std is not None:
            stds.append(result.std)
    if not means:
        raise InputError("no calibration fields given.")
    std = stds if len(stds) == len(means) else None
    cal = calibrate(
        means,
        std,
        targets,
        scale=scale,
        bins=bins,
        samples=samples,
        tta=tta,
        source=source,
        window=window,
        alpha=alpha,
    )
    if store:
        model.calibration = cal.get_config()
    return cal


def split_fields(model, spec, split: str = "val"):
    """The ``(raw input, target)`` regions of a `PairedDataset`'s `split`, in the model's
    channel order (channels are matched by name): what `calibrate_split` stains.

    Args:
        model: a `Pix2PixHD`.
        spec: the `PairedDataset`.
        split: "train", "val" or "test".

    Yields:
        ``(x, y)`` arrays, (h, w, C_in) raw and (h, w, C_out) target units.
    """
    from vsgan.io.readers import resolve_channels

    where = f"dataset {spec.name!r}"
    x_idx = resolve_channels(spec.input_names, model.input_channels, spec.in_channels, where)
    y_idx = resolve_channels(spec.target_names, model.output_channels, spec.out_channels, where)
    for field in spec.fields_in(split):
        x, y = field.read()
        x, y = x[..., x_idx], y[..., y_idx]
        for y0, y1, x0, x1 in field.rects(split, x.shape[:2]):
            yield x[y0:y1, x0:x1], y[y0:y1, x0:x1]


def calibrate_split(model, spec, split: str = "val", **kwargs) -> Calibration:
    """Calibrates `model` on a `PairedDataset`'s `split` (default: the validation data).

    Channels are matched by name between the model and the dataset.

    Args:
        model: a `Pix2PixHD`.
        spec: the `PairedDataset` the model was trained on (its validation split was only
            used to watch training, never to fit weights).
        split: the split to calibrate on.
        **kwargs: passed to `calibrate_model`.

    Returns:
        the `Calibration` (also stored in `model.calibration`).
    """
    kwargs.setdefault("source", f"{spec.name} {split} split")
    return calibrate_model(model, split_fields(model, spec, split), **kwargs)
