"""The one-glance figure of a stained field: input | mean | uncertainty | target | |error|.

With a calibrated interval a "do not trust" column shows the prediction in grey with the
pixels flagged by `vsgan.evaluation.uncertainty.hallucination` in red: predicted structure
whose interval reaches the background, so the data cannot vouch that anything is there.

Drawn with Pillow only (no matplotlib). Every column is percentile-scaled and has a colour
bar with its value range in data units. The mean prediction and the target share the
target's range so their brightness can be compared; uncertainty and error use their own.

Example:
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x, y = rng.random((64, 64)), rng.random((64, 64))
>>> panel(x, y, None, y, "/tmp/vsgan_doc_panel.png").name
'vsgan_doc_panel.png'
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vsgan.errors import InputError
from vsgan.io.files import atomic_path

__all__ = ["COLORMAPS", "colorize", "panel", "render_panel"]

# Anchor colours of perceptually ordered maps (sampled from matplotlib's), linearly
# interpolated to 256 entries.
_ANCHORS = {
    "gray": ["#000000", "#ffffff"],
    "viridis": ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"],
    "magma": ["#000004", "#3b0f70", "#8c2981", "#de4968", "#fe9f6d", "#fcfdbf"],
}


def _lut(anchors: list[str]) -> np.ndarray:
    rgb = np.array([[int(a[i : i + 2], 16) for i in (1, 3, 5)] for a in anchors], float)
    pos = np.linspace(0, 1, len(anchors))
    t = np.linspace(0, 1, 256)
    return np.stack([np.interp(t, pos, rgb[:, k]) for k in range(3)], -1).round().astype(np.uint8)


COLORMAPS = {name: _lut(anchors) for name, anchors in _ANCHORS.items()}

_PAD = 6
_BAR = 10


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def colorize(image, lo: float, hi: float, cmap: str = "gray") -> np.ndarray:
    """Maps a 2-D array to RGB uint8 with values lo..hi spread over the colour map.

    Args:
        image: 2-D array.
        lo: value shown as the map's first colour (and below).
        hi: value shown as the map's last colour (and above).
        cmap: one of `COLORMAPS` ("gray", "viridis", "magma").

    Returns:
        (H, W, 3) uint8 array.
    """
    x = np.asarray(image, dtype=np.float64)
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    index = np.clip((x - lo) * scale, 0, 255).astype(np.uint8)
    return COLORMAPS[cmap][index]


def _channels(array, name: str, required: bool = False) -> np.ndarray | None:
    if array is None:
        if required:
            raise InputError(f"{name} is required.")
        return None
    x = np.asarray(array)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.size == 0 or x.dtype.kind not in "biuf":
        raise InputError(f"{name} has shape {x.shape} / dtype {x.dtype}; pass (H, W) or (H, W, C).")
    return x.astype(np.float32)


def _range(x: np.ndarray, percentiles: tuple[float, float], from_zero: bool) -> tuple[float, float]:
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, percentiles)
    if from_zero:
        lo = 0.0
    if hi <= lo:
        hi = lo + 1.0 if hi == lo else hi
    return float(lo), float(hi)


def _draw(a, lo: float, hi: float, cmap: str) -> np.ndarray:
    if cmap != "flags":
        return colorize(a, lo, hi, cmap)
    image, flags = a  # the prediction in grey, flagged pixels in red
    rgb = colorize(image, lo, hi, "gray")
    rgb[flags] = (0.2 * rgb[flags] + 0.8 * np.array([230, 30, 30])).astype(np.uint8)
    return rgb


def _resize(rgb: np.ndarray, max_size: int) -> Image.Image:
    img = Image.fromarray(rgb)
    scale = max_size / max(img.size)
    if scale < 1:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.BOX)
    return img


def render_panel(
    input,
    mean,
    std=None,
    target=None,
    *,
    channel_names: list[str] | None = None,
    max_size: int = 512,
    percentiles: tuple[float, float] = (0.5, 99.5),
    interval=None,
) -> Image.Image:
    """Draws the panel as a Pillow image (see `panel`, which also writes it)."""
    x = _channels(input, "input", required=True)
    m = _channels(mean, "mean", required=True)
    s = _channels(std, "std")
    t = _channels(target, "target")
    lo_hi = None
    if interval is not None:
        if len(interval) != 2:
            raise InputError("interval must be a (lower, upper) pair of maps.")
        lo_hi = (_channels(interval[0], "lower"), _channels(interval[1], "upper"))
    for name, arr in (("std", s), ("target", t), *zip(("lower", "upper"), lo_hi or ())):
        if arr is not None and arr.shape != m.shape:
            raise InputError(f"{name} shape {arr.shape} differs from mean shape {m.shape}.")
    if x.shape[:2] != m.shape[:2]:
        raise InputError(f"input size {x.shape[:2]} differs from mean size {m.shape[:2]}.")
    names = channel_names or [f"channel {c}" for c in range(m.shape[-1])]

    title_font, label_font = _font(14), _font(11)
    rows = []
    for c in range(m.shape[-1]):
        # (title, image, colour map, range) per column.
        lo, hi = _range(t[..., c] if t is not None else m[..., c], percentiles, False)
        cols = [("input", x[..., 0], "gray", _range(x[..., 0], percentiles, False))]
        cols.append((f"prediction ({names[c]})", m[..., c], "viridis", (lo, hi)))
        if s is not None:
            cols.append(
                ("uncertainty (std)", s[..., c], "magma", _range(s[..., c], percentiles, True))
            )
        if lo_hi is not None:
            from vsgan.evaluation.uncertainty import hallucination

            flags, _ = hallucination(m[..., c], lo_hi[0][..., c], lo_hi[1][..., c])
            cols.append(("do not trust (red)", (m[..., c], flags), "flags", (lo, hi)))
        if t is not None:
            cols.append((f"target ({names[c]})", t[..., c], "viridis", (lo, hi)))
            err = np.abs(m[..., c] - t[..., c])
            cols.append(("|prediction - target|", err, "magma", _range(err, percentiles, True)))
        rows.append(cols)

    tiles = [
        [_resize(_draw(a, lo, hi, cmap), max_size) for _, a, cmap, (lo, hi) in r] for r in rows
    ]
    cell_w, img_h = tiles[0][0].width, tiles[0][0].height
    title_h, label_h = 20, 14
    cell_h = title_h + img_h + _PAD + _BAR + label_h
    ncols = len(rows[0])
    canvas = Image.new(
        "RGB", (ncols * (cell_w + _PAD) + _PAD, len(rows) * (cell_h + _PAD) + _PAD), "white"
    )
    draw = ImageDraw.Draw(canvas)
    for r, (cols, imgs) in enumerate(zip(rows, tiles)):
        y0 = _PAD + r * (cell_h + _PAD)
        for k, ((title, _, cmap, (lo, hi)), img) in enumerate(zip(cols, imgs)):
            x0 = _PAD + k * (cell_w + _PAD)
            draw.text((x0, y0 + 2), title, fill="black", font=title_font)
            canvas.paste(img, (x0, y0 + title_h))
            bar_y = y0 + title_h + img_h + _PAD
            lut = COLORMAPS["gray" if cmap == "flags" else cmap]
            bar = np.repeat(lut[np.linspace(0, 255, cell_w).astype(int)][None], _BAR, 0)
            canvas.paste(Image.fromarray(bar), (x0, bar_y))
            draw.text((x0, bar_y + _BAR + 1), f"{lo:.3g}", fill="black", font=label_font)
            hi_text = f"{hi:.3g}"
            text_w = draw.textlength(hi_text, font=label_font)
            draw.text(
                (x0 + cell_w - text_w, bar_y + _BAR + 1), hi_text, fill="black", font=label_font
            )
    return canvas


def panel(
    input,
    mean,
    std,
    target,
    path: str | os.PathLike,
    *,
    channel_names: list[str] | None = None,
    max_size: int = 512,
    percentiles: tuple[float, float] = (0.5, 99.5),
    interval=None,
) -> Path:
    """Writes the PNG panel input | mean prediction | uncertainty | target | absolute error.

    One row per output channel. Columns whose data is missing are left out: `std=None`
    drops the uncertainty column, `target=None` drops the target and error columns. The
    file is written under a temporary name and renamed, so a reader never sees half a PNG.

    Args:
        input: label-free image, (H, W) or (H, W, C_in); channel 0 is shown.
        mean: mean prediction, (H, W) or (H, W, C_out), target units.
        std: per-pixel standard deviation of the prediction (same shape) or None.
        target: measured stain (same shape) or None.
        path: PNG file to write; its folder must exist.
        channel_names: names of the output channels for the titles.
        max_size: longest side of each image in the figure, in pixels (large fields are
            shrunk by area averaging).
        percentiles: low and high percentile mapped to the ends of each colour map
            (uncertainty and error start at 0).
        interval: optional (lower, upper) maps of a calibrated interval (e.g.
            `StainResult.interval(0.9)`): adds the "do not trust" column.

    Returns:
        the path written.

    Example:
    >>> import numpy as np
    >>> y = np.random.default_rng(1).random((32, 48))
    >>> panel(y, y, 0.1 * y, y, "/tmp/vsgan_doc_panel2.png").suffix
    '.png'
    """
    path = Path(path)
    image = render_panel(
        input,
        mean,
        std,
        target,
        channel_names=channel_names,
        max_size=max_size,
        percentiles=percentiles,
        interval=interval,
    )
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path
