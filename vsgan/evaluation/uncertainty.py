"""How good is an uncertainty map? Ranking, flagging, calibration, and where not to trust.

A per-pixel uncertainty (the Monte-Carlo std, or a calibrated interval's width) is useful
if it is high where the prediction is wrong. Over a whole field that is easy: background
is easy and cells are hard, so any map that lights up the cells ranks the error well. The
numbers here therefore also look *inside the target's foreground* (pixels above the
target's Otsu threshold), where the question is which cells are predicted wrong:

- `spearman`: rank correlation between the uncertainty and |prediction - target|, over
  the field and inside the foreground;
- `auroc`: how well the uncertainty singles out the worst 10% of the errors (0.5: chance);
- `coverage`: the fraction of target pixels inside an interval (nominal 90% should cover
  90%); `reliability` sweeps the nominal level and `reliability_figure` draws it;
- `hallucination`: where the interval is wide relative to the predicted signal, i.e. its
  lower bound falls to the background: a predicted structure there may be invented.

Example:
>>> import numpy as np
>>> spearman(np.array([1.0, 2, 3, 4]), np.array([0.1, 0.3, 0.2, 0.4]))
0.8
>>> auroc(np.array([1.0, 2, 3, 4]), np.array([0.1, 0.3, 0.2, 0.4]), worst=0.25)
1.0
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from vsgan.errors import InputError
from vsgan.io.files import atomic_path

__all__ = [
    "LEVELS",
    "auroc",
    "coverage",
    "foreground",
    "gaussian_interval",
    "hallucination",
    "reliability",
    "reliability_figure",
    "spearman",
    "tune_shortfall",
    "uncertainty_report",
]

LEVELS = (0.5, 0.8, 0.9, 0.95)
# Nominal levels the reliability diagram sweeps.
SWEEP = tuple(float(round(v, 2)) for v in np.arange(0.05, 1.0, 0.05)) + (0.975, 0.99)


def _flat(a, name: str) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64)
    if x.dtype.kind not in "fiu" or x.size == 0:
        raise InputError(f"{name} is empty or not numeric (shape {x.shape}); pass a number map.")
    return x


def _same(*arrays: tuple[str, np.ndarray]) -> None:
    (n0, a0), *rest = arrays
    for name, a in rest:
        if a.shape != a0.shape:
            raise InputError(
                f"{name} shape {a.shape} differs from {n0} shape {a0.shape}; pass maps of "
                "one field."
            )


def _select(mask, shape, *arrays):
    if mask is None:
        return [a.ravel() for a in arrays]
    m = np.asarray(mask, dtype=bool)
    if m.shape != shape:
        raise InputError(f"mask shape {m.shape} differs from the maps' shape {shape}.")
    return [a[m] for a in arrays]


def spearman(score, abs_error, mask=None) -> float:
    """Spearman rank correlation of an uncertainty score and the absolute error.

    Args:
        score: uncertainty per pixel (std, interval width, ...), any shape.
        abs_error: |prediction - target|, same shape.
        mask: optional boolean map; only True pixels count.

    Returns:
        rho in [-1, 1]; NaN when fewer than 2 pixels or either map is constant there.
    """
    s, e = _flat(score, "score"), _flat(abs_error, "abs_error")
    _same(("score", s), ("abs_error", e))
    s, e = _select(mask, s.shape, s, e)
    if s.size < 2 or np.ptp(s) == 0 or np.ptp(e) == 0:
        return float("nan")
    rs, re = stats.rankdata(s), stats.rankdata(e)
    rs, re = rs - rs.mean(), re - re.mean()
    return float(round((rs * re).sum() / np.sqrt((rs**2).sum() * (re**2).sum()), 12))


def auroc(score, abs_error, worst: float = 0.10, mask=None) -> float:
    """Area under the ROC curve of `score` flagging the worst `worst` fraction of errors.

    The positives are the pixels whose error is at or above the (1 - worst) quantile of the
    error; the AUROC is the probability that a random positive scores higher than a random
    negative (ties count half: the Mann-Whitney U statistic).

    Args:
        score: uncertainty per pixel.
        abs_error: |prediction - target|, same shape.
        worst: fraction of pixels counted as the errors to flag, in (0, 1).
        mask: optional boolean map; only True pixels count.

    Returns:
        AUROC in [0, 1] (0.5: no better than chance); NaN without both classes.
    """
    if not 0 < worst < 1:
        raise InputError(f"worst={worst!r}: give a fraction in (0, 1), e.g. 0.1.")
    s, e = _flat(score, "score"), _flat(abs_error, "abs_error")
    _same(("score", s), ("abs_error", e))
    s, e = _select(mask, s.shape, s, e)
    if s.size < 2:
        return float("nan")
    positive = e >= np.quantile(e, 1 - worst)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(s)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def foreground(target) -> np.ndarray:
    """Boolean map of the target's foreground: pixels above its Otsu threshold (per channel).

    Args:
        target: (H, W) or (H, W, C) measured stain.

    Returns:
        a boolean array of the same shape.
    """
    from skimage.filters import threshold_otsu

    t = _flat(target, "target")
    if t.ndim == 2:
        return t > threshold_otsu(t) if np.ptp(t) > 0 else np.zeros(t.shape, bool)
    return np.stack([foreground(t[..., c]) for c in range(t.shape[-1])], axis=-1)


def tune_shortfall(
    mean,
    target,
    *,
    windows=(15, 21, 31, 45, 63),
    alphas=(0.0, 0.05, 0.1, 0.2, 0.4),
    field_min: float = 0.6,
) -> tuple[int, float, list[dict[str, float]]]:
    """Chooses the "shortfall" scale's window and alpha for one model, on calibration data.

    A wider window ranks the errors inside the nuclei better (a nucleus drawn too dim, or
    missed, sits near brighter predicted ones) and the field worse (it lights up the
    background around every nucleus), so the two ranks trade off. The rule: among the
    settings whose field-level Spearman is at least `field_min`, the best Spearman inside
    the target's foreground; when none reaches `field_min`, the best field-level one.

    Args:
        mean: predictions (one pass), (H, W, C) or a list of such fields.
        target: the measured stain, same shapes.
        windows: neighbourhood sides to try (pixels).
        alphas: shares of the pixel's own prediction to try.
        field_min: the field-level Spearman a setting must keep.

    Returns:
        ``(window, alpha, rows)``; rows hold every setting's ``window``, ``alpha``,
        ``spearman_field`` and ``spearman_foreground``.

    Example:
    >>> from vsgan.inference.calibration import shortfall
    >>> yy, xx = np.mgrid[:96, :96]
    >>> mean = np.exp(-((yy % 32 - 16) ** 2 + (xx % 32 - 16) ** 2) / 40.0)[..., None]
    >>> noise = np.random.default_rng(0).normal(0, 1, mean.shape)
    >>> target = mean + noise * (shortfall(mean, 21, 0.1) + 0.01)
    >>> tune_shortfall(mean, target, windows=(5, 21, 45), alphas=(0.0, 0.1, 0.4))[:2]
    (21, 0.1)
    """
    from vsgan.inference.calibration import shortfall

    means = [np.asarray(m, np.float32) for m in (mean if isinstance(mean, list) else [mean])]
    targets = target if isinstance(target, list) else [target]
    targets = [np.asarray(t, np.float32) for t in targets]
    if len(means) != len(targets) or any(m.shape != t.shape for m, t in zip(means, targets)):
        raise InputError("give one target field of the same shape per mean field.")
    errors = np.concatenate([np.abs(t - m).ravel() for m, t in zip(means, targets)])
    inside = np.concatenate([foreground(t).ravel() for t in targets])
    rows = []
    for w in windows:
        for a in alphas:
            score = np.concatenate([shortfall(m, int(w), float(a)).ravel() for m in means])
            rows.append(
                {
                    "window": int(w),
                    "alpha": float(a),
                    "spearman_field": spearman(score, errors),
                    "spearman_foreground": spearman(score, errors, inside),
                }
            )
    ok = [r for r in rows if r["spearman_field"] >= field_min]
    best = (
        max(ok, key=lambda r: r["spearman_foreground"])
        if ok
        else max(rows, key=lambda r: r["spearman_field"])
    )
    return best["window"], best["alpha"], rows


def gaussian_interval(mean, std, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The uncalibrated interval mean +- z * std that a normal distribution would give."""
    z = float(stats.norm.ppf(0.5 + level / 2))
    m, s = _flat(mean, "mean"), _flat(std, "std")
    return m - z * s, m + z * s


def coverage(target, lower, upper, mask=None) -> float:
    """Fraction of target pixels inside [lower, upper] (only True pixels of `mask`).

    Example:
    >>> coverage(np.array([0.0, 1, 2, 3]), np.zeros(4), np.full(4, 1.5))
    0.5
    """
    t, lo, hi = _flat(target, "target"), _flat(lower, "lower"), _flat(upper, "upper")
    _same(("target", t), ("lower", lo), ("upper", hi))
    t, lo, hi = _select(mask, t.shape, t, lo, hi)
    if t.size == 0:
        return float("nan")
    return float(np.mean((t >= lo) & (t <= hi)))


def reliability(target, interval_fn, levels=SWEEP, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """Empirical coverage against nominal level: the data of a reliability diagram.

    Args:
        target: measured stain.
        interval_fn: level -> (lower, upper) maps of the target's shape (e.g.
            `StainResult.interval`, or `lambda q: gaussian_interval(mean, std, q)`).
        levels: nominal levels to sweep.
        mask: optional boolean map of the pixels that count.

    Returns:
        (nominal, empirical) arrays.
    """
    levels = np.asarray(levels, np.float64)
    got = [coverage(target, *interval_fn(float(q)), mask=mask) for q in levels]
    return levels, np.asarray(got)


def hallucination(
    mean, lower, upper, background: float | None = None
) -> tuple[np.ndarray, dict[str, float]]:
    """Where the prediction shows structure the interval cannot vouch for.

    The predicted signal is the mean above the predicted background (the median of the
    pixels below the prediction's Otsu threshold, unless given). A pixel is flagged
    "do not trust the detail here" when it is predicted foreground (above the Otsu
    threshold of the prediction) and the interval's lower bound reaches the background:
    the data cannot rule out that nothing is there. The relative width is the interval
    width over twice the predicted signal (> 1 where flagged, roughly).

    Args:
        mean: (H, W) prediction, target units.
        lower: (H, W) lower bound of an interval (e.g. 90%).
        upper: (H, W) upper bound.
        background: the stain's background level (default: estimated from `mean`).

    Returns:
        (flags, summary): the boolean map and a dict with `flagged_fraction` (of predicted
        foreground pixels), `flagged_area` (of all pixels), `flagged_objects` (fraction of
        predicted objects with most of their pixels flagged), `objects` (predicted objects)
        and `median_relative_width` inside the predicted foreground.
    """
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    m, lo, hi = _flat(mean, "mean"), _flat(lower, "lower"), _flat(upper, "upper")
    _same(("mean", m), ("lower", lo), ("upper", hi))
    if m.ndim != 2:
        raise InputError(f"mean has shape {m.shape}; pass one channel, (H, W).")
    if np.ptp(m) == 0:
        flags = np.zeros(m.shape, bool)
        return flags, {
            "flagged_fraction": 0.0,
            "flagged_area": 0.0,
            "flagged_objects": 0.0,
            "objects": 0.0,
            "median_relative_width": float("nan"),
        }
    threshold = threshold_otsu(m)
    predicted = m > threshold
    if background is None:
        background = float(np.median(m[~predicted])) if (~predicted).any() else float(m.min())
    signal = np.maximum(m - background, 1e-12)
    flags = predicted & (lo <= background)
    labels, n = ndimage.label(predicted)
    if n:
        share = ndimage.mean(flags.astype(float), labels, index=np.arange(1, n + 1))
        flagged_objects = float(np.mean(np.asarray(share) > 0.5))
    else:
        flagged_objects = 0.0
    rel = (hi - lo) / (2 * signal)
    summary = {
        "flagged_fraction": float(flags.sum() / max(predicted.sum(), 1)),
        "flagged_area": float(flags.mean()),
        "flagged_objects": flagged_objects,
        "objects": float(n),
        "median_relative_width": float(np.median(rel[predicted])) if predicted.any() else 0.0,
    }
    return flags, summary


def uncertainty_report(
    mean,
    std,
    target,
    interval_fn=None,
    *,
    levels=LEVELS,
    worst: float = 0.10,
    score=None,
) -> dict[str, float]:
    """The uncertainty numbers of one channel of one field.

    Args:
        mean: (H, W) prediction, target units.
        std: (H, W) spread (e.g. Monte-Carlo std), or None.
        target: (H, W) measured stain.
        interval_fn: level -> (lower, upper) of a calibrated interval (None: coverage of
            the Gaussian mean +- z * std is reported, `gauss_coverage@q`).
        levels: nominal levels whose coverage is reported.
        worst: the error fraction `auroc` flags.
        score: the uncertainty to rank with (default `std`; e.g. a calibrated half-width).

    Returns:
        `fg_fraction`; for the score (std): `spearman_field`, `spearman_fg`,
        `auroc_worst10` (field), `auroc_worst10_fg`; with a calibrated interval the same
        four for its 90% width (`width_spearman_field`, ...), `interval_width@90` (mean)
        and `coverage@50` ..; otherwise `gauss_coverage@50` .. of mean +- z std.
    """
    m, t = _flat(mean, "mean"), _flat(target, "target")
    _same(("mean", m), ("target", t))
    err = np.abs(m - t)
    fg = foreground(t)
    score = std if score is None else score
    tag = f"{round(worst * 100):d}"
    row: dict[str, float] = {"fg_fraction": float(fg.mean())}
    if score is not None:
        row.update(
            spearman_field=spearman(score, err),
            spearman_fg=spearman(score, err, fg),
            **{f"auroc_worst{tag}": auroc(score, err, worst)},
            **{f"auroc_worst{tag}_fg": auroc(score, err, worst, fg)},
        )
    if interval_fn is not None:
        # The calibrated interval's width is an uncertainty map too: rank it the same way.
        lo, hi = interval_fn(0.9)
        width = np.asarray(hi, np.float64) - np.asarray(lo, np.float64)
        row.update(
            width_spearman_field=spearman(width, err),
            width_spearman_fg=spearman(width, err, fg),
            **{f"width_auroc_worst{tag}": auroc(width, err, worst)},
            **{f"width_auroc_worst{tag}_fg": auroc(width, err, worst, fg)},
        )
        row["interval_width@90"] = float(np.mean(width))
    for q in levels:
        key = f"{100 * q:g}"
        if interval_fn is not None:
            row[f"coverage@{key}"] = coverage(t, *interval_fn(q))
        elif std is not None:
            row[f"gauss_coverage@{key}"] = coverage(t, *gaussian_interval(m, std, q))
    return row


def reliability_figure(
    curves: dict[str, tuple[Any, Any]], path: str | os.PathLike, *, size: int = 360
) -> Path:
    """Draws a reliability diagram (empirical vs nominal coverage) as a PNG with Pillow.

    Args:
        curves: label -> (nominal, empirical) arrays (from `reliability`).
        path: PNG to write (atomically); its folder must exist.
        size: side of the plot area in pixels.

    Returns:
        the path written.

    Example:
    >>> q = np.linspace(0.05, 0.95, 19)
    >>> reliability_figure({"ideal": (q, q)}, "/tmp/vsgan_doc_reliability.png").name
    'vsgan_doc_reliability.png'
    """
    from PIL import Image, ImageDraw

    from vsgan.evaluation.figures import _font

    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    left, top, bottom, right = 48, 28, 40, 12
    legend_h = 16 * len(curves)
    img = Image.new("RGB", (left + size + right, top + size + bottom + legend_h), "white")
    draw = ImageDraw.Draw(img)
    font = _font(11)

    def xy(nominal, empirical):
        return left + nominal * size, top + (1 - empirical) * size

    draw.text((left, 6), "reliability: empirical vs nominal coverage", fill="black", font=font)
    for tick in np.linspace(0, 1, 6):
        x, y = xy(tick, tick)
        draw.line([(x, top), (x, top + size)], fill="#e6e6e6")
        draw.line([(left, y), (left + size, y)], fill="#e6e6e6")
        draw.text((x - 8, top + size + 4), f"{tick:.1f}", fill="black", font=font)
        draw.text((left - 26, y - 6), f"{tick:.1f}", fill="black", font=font)
    draw.rectangle([left, top, left + size, top + size], outline="black")
    draw.line([xy(0, 0), xy(1, 1)], fill="#888888", width=1)
    draw.text((left + size // 2 - 30, top + size + 18), "nominal level", fill="black", font=font)
    for k, (label, (nominal, empirical)) in enumerate(curves.items()):
        colour = colours[k % len(colours)]
        pts = [xy(float(a), float(b)) for a, b in zip(nominal, empirical) if np.isfinite(b)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for x, y in pts:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        ly = top + size + bottom + 16 * k
        draw.line([(left, ly + 6), (left + 20, ly + 6)], fill=colour, width=2)
        draw.text((left + 26, ly), label, fill="black", font=font)
    path = Path(path)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path
