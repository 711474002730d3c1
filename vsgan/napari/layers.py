"""How vsgan's channels look in napari: colormaps, contrast and blending by channel name."""

from __future__ import annotations

from typing import Any

import numpy as np

# Stains by the usual colour of their dye; anything else is green.
_COLORS = (
    (("dapi", "hoechst", "dna", "nuclei", "nucleus", "h2b"), "cyan"),
    (("membrane", "cellmask", "wga", "actin", "phalloidin", "cell"), "magenta"),
    (("map2", "tubulin", "mito"), "yellow"),
    (("nfh", "neurofilament"), "green"),
)


def stain_colormap(name: str) -> str:
    """A napari colormap for a channel name: its dye's colour, `inferno` for a std."""
    low = name.lower()
    if low.endswith("_std"):
        return "inferno"
    for keys, color in _COLORS:
        if any(k in low for k in keys):
            return color
    if any(k in low for k in ("phase", "brightfield", "dic", "retardance", "label_free")):
        return "gray"
    return "green"


def contrast_limits(data, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """Robust display range: percentiles of a subsample, never empty."""
    a = np.asarray(data)
    step = max(1, int(np.sqrt(a.size / 250_000)))  # at most ~250k pixels
    sub = a[..., ::step, ::step]
    sub = sub[np.isfinite(sub)]
    if sub.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(sub, [low, high]))
    if hi <= lo:
        lo, hi = float(sub.min()), float(sub.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def image_kwargs(name: str, data, **extra: Any) -> dict[str, Any]:
    """`add_image` keyword arguments for a vsgan channel called `name`."""
    is_std = name.lower().endswith("_std")
    lo, hi = contrast_limits(data)
    kwargs: dict[str, Any] = {
        "name": name,
        "colormap": stain_colormap(name),
        "blending": "additive",
        "contrast_limits": (0.0, hi) if is_std else (lo, hi),
    }
    kwargs.update(extra)
    return kwargs
