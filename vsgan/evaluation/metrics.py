"""Image-level metrics of a virtual stain against its measured target.

Every metric follows the convention of the seed's evaluation (REFERENCE.md section 3): each
image is min-max scaled to [0, 1] on its own, then compared with a data range of 1. SSIM uses
scikit-image's defaults (7x7 uniform window). Images are 2-D or (H, W, C); multi-channel
images are scored per channel and the channel scores averaged.

PSNR is never computed on uint16-scaled images with a data range of 65535: that inflates it
to ~50 dB for any prediction and says nothing.

Example:
>>> import numpy as np
>>> from vsgan.evaluation import metrics
>>> target = np.random.default_rng(0).random((64, 64))
>>> round(metrics.pearson_r(2 * target + 5, target), 6)
1.0
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, stats
from skimage.metrics import structural_similarity

from vsgan.errors import InputError

__all__ = [
    "evaluate_pair",
    "high_frequency_ratio",
    "minmax_scale",
    "ms_ssim",
    "nrmse",
    "pearson_r",
    "psnr",
    "ssim",
    "uncertainty_error_correlation",
]

# Wang, Simoncelli & Bovik (2003), as in tf.image.ssim_multiscale.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_MS_SSIM_WINDOW = 11
_MS_SSIM_SIGMA = 1.5


def _as_array(image, name: str) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype.kind not in "biuf":
        raise InputError(
            f"{name} has dtype {array.dtype}, not a number type; pass a numeric image array."
        )
    if array.ndim not in (2, 3):
        raise InputError(
            f"{name} has shape {array.shape}; pass a 2-D (H, W) or 3-D (H, W, C) image."
        )
    if array.size == 0:
        raise InputError(f"{name} is empty (shape {array.shape}); pass a non-empty image.")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} contains NaN or Inf; replace them (e.g. np.nan_to_num) first.")
    array = array.astype(np.float64)
    return array[..., None] if array.ndim == 2 else array


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    p = _as_array(pred, "pred")
    t = _as_array(target, "target")
    if p.shape != t.shape:
        raise InputError(
            f"pred shape {np.shape(pred)} differs from target shape {np.shape(target)}; "
            "compare images of the same size and channel count."
        )
    return p, t


def minmax_scale(image) -> np.ndarray:
    """Scales one 2-D image linearly to [0, 1] (a constant image becomes all zeros).

    Args:
        image: 2-D array.

    Returns:
        float64 array of the same shape.
    """
    x = np.asarray(image, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros_like(x)
    return (x - lo) / (hi - lo)


def _per_channel(metric, pred, target) -> float:
    p, t = _pair(pred, target)
    scores = [metric(minmax_scale(p[..., c]), minmax_scale(t[..., c])) for c in range(p.shape[-1])]
    return float(np.mean(scores))


def _psnr(p: np.ndarray, t: np.ndarray) -> float:
    mse = float(np.mean((p - t) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def psnr(pred, target) -> float:
    """Peak signal-to-noise ratio in dB, data range 1 after per-image min-max scaling.

    Args:
        pred: predicted image, (H, W) or (H, W, C).
        target: measured image of the same shape.

    Returns:
        PSNR (mean over channels); `inf` for identical scaled images.
    """
    return _per_channel(_psnr, pred, target)


def _ssim(p: np.ndarray, t: np.ndarray) -> float:
    if min(p.shape) < 7:
        raise InputError(
            f"SSIM needs images of at least 7x7 pixels (its window), got {p.shape}; "
            "evaluate larger images."
        )
    return float(structural_similarity(t, p, data_range=1.0))


def ssim(pred, target) -> float:
    """Structural similarity with scikit-image defaults (7x7 uniform window, data range 1).

    Args:
        pred: predicted image, (H, W) or (H, W, C), at least 7x7.
        target: measured image of the same shape.

    Returns:
        mean SSIM (mean over channels), at most 1.
    """
    return _per_channel(_ssim, pred, target)


def _pearson(p: np.ndarray, t: np.ndarray) -> float:
    p, t = p.ravel() - p.mean(), t.ravel() - t.mean()
    denom = math.sqrt(float(p @ p) * float(t @ t))
    return math.nan if denom == 0 else float(p @ t) / denom


def pearson_r(pred, target) -> float:
    """Pearson correlation coefficient of the flattened images.

    Args:
        pred: predicted image, (H, W) or (H, W, C).
        target: measured image of the same shape.

    Returns:
        r in [-1, 1] (mean over channels); NaN where an image is constant.
    """
    return _per_channel(_pearson, pred, target)


def _nrmse(p: np.ndarray, t: np.ndarray) -> float:
    return math.sqrt(float(np.mean((p - t) ** 2)))


def nrmse(pred, target) -> float:
    """Root-mean-square error of the min-max scaled images (so divided by the data range, 1).

    With this definition `psnr == -20 * log10(nrmse)` for a single channel.

    Args:
        pred: predicted image, (H, W) or (H, W, C).
        target: measured image of the same shape.

    Returns:
        NRMSE in [0, 1] (mean over channels).
    """
    return _per_channel(_nrmse, pred, target)


def _gaussian_window() -> np.ndarray:
    coords = np.arange(_MS_SSIM_WINDOW) - (_MS_SSIM_WINDOW - 1) / 2
    g = np.exp(-(coords**2) / (2 * _MS_SSIM_SIGMA**2))
    g = np.outer(g, g)
    return g / g.sum()


def _ssim_terms(p: np.ndarray, t: np.ndarray, window: np.ndarray) -> tuple[float, float]:
    """Mean luminance * contrast-structure and mean contrast-structure, 'valid' windows."""
    c1, c2 = 0.01**2, 0.03**2
    r = _MS_SSIM_WINDOW // 2

    def filt(x):
        return ndimage.correlate(x, window, mode="reflect")[r:-r, r:-r]

    mp, mt = filt(p), filt(t)
    spp = filt(p * p) - mp * mp
    stt = filt(t * t) - mt * mt
    spt = filt(p * t) - mp * mt
    luminance = (2 * mp * mt + c1) / (mp * mp + mt * mt + c1)
    cs = (2 * spt + c2) / (spp + stt + c2)
    return float(np.mean(luminance * cs)), float(np.mean(cs))


def _halve(x: np.ndarray) -> np.ndarray:
    # 2x2 average pooling; an odd edge is mirrored first, as tf.image.ssim_multiscale does.
    x = np.pad(x, ((0, x.shape[0] % 2), (0, x.shape[1] % 2)), mode="symmetric")
    return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def _ms_ssim(p: np.ndarray, t: np.ndarray) -> float:
    # Use as many of the 5 scales as the image allows (the coarsest must hold an 11x11
    # window) and renormalise their weights; 5 scales need more than 160 px per side.
    side = min(p.shape)
    scales = 0
    while scales < len(MS_SSIM_WEIGHTS) and side >= _MS_SSIM_WINDOW:
        scales += 1
        side = (side + 1) // 2
    if scales == 0:
        raise InputError(
            f"MS-SSIM needs images of at least {_MS_SSIM_WINDOW}x{_MS_SSIM_WINDOW} pixels, "
            f"got {p.shape}; evaluate larger images."
        )
    weights = np.asarray(MS_SSIM_WEIGHTS[:scales])
    weights = weights / weights.sum()
    window = _gaussian_window()
    values = []
    for level in range(scales):
        full, cs = _ssim_terms(p, t, window)
        values.append(full if level == scales - 1 else cs)
        p, t = _halve(p), _halve(t)
    # Negative terms are clipped at 0 (as tf.image.ssim_multiscale) so the power is defined.
    values = np.maximum(np.asarray(values), 0.0)
    return float(np.prod(values**weights))


def ms_ssim(pred, target) -> float:
    """Multi-scale SSIM (Wang et al. 2003): Gaussian 11x11 window, sigma 1.5, data range 1.

    Matches `tf.image.ssim_multiscale(max_val=1)` on min-max scaled images of more than
    160 px per side. Smaller images use fewer scales, with the standard weights of the scales
    used renormalised to sum to 1.

    Args:
        pred: predicted image, (H, W) or (H, W, C), at least 11x11.
        target: measured image of the same shape.

    Returns:
        MS-SSIM in [0, 1] (mean over channels).
    """
    return _per_channel(_ms_ssim, pred, target)


def evaluate_pair(pred, target) -> dict[str, float]:
    """All image metrics of one prediction against its target.

    Args:
        pred: predicted image, (H, W) or (H, W, C), at least 11x11.
        target: measured image of the same shape.

    Returns:
        dict with keys "psnr", "ssim", "ms_ssim", "pearson_r", "nrmse".

    Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((32, 32))
    >>> evaluate_pair(x, x)["ssim"]
    1.0
    """
    p, t = _pair(pred, target)
    return {
        "psnr": psnr(p, t),
        "ssim": ssim(p, t),
        "ms_ssim": ms_ssim(p, t),
        "pearson_r": pearson_r(p, t),
        "nrmse": nrmse(p, t),
    }


def uncertainty_error_correlation(std, abs_error, mask=None) -> float:
    """Spearman rank correlation between predicted std and absolute error, per pixel.

    Positive values mean the uncertainty map flags the pixels where the prediction is wrong.

    Args:
        std: per-pixel standard deviation over samples, any shape.
        abs_error: |mean prediction - target|, same shape.
        mask: optional boolean array of the same shape; only True pixels are used.

    Returns:
        rho in [-1, 1]; NaN if either map is constant.
    """
    s = np.asarray(std, dtype=np.float64)
    e = np.asarray(abs_error, dtype=np.float64)
    if s.shape != e.shape:
        raise InputError(
            f"std shape {s.shape} differs from abs_error shape {e.shape}; pass maps of one field."
        )
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != s.shape:
            raise InputError(f"mask shape {mask.shape} differs from std shape {s.shape}.")
        s, e = s[mask], e[mask]
    s, e = s.ravel(), e.ravel()
    if s.size < 2 or not (np.all(np.isfinite(s)) and np.all(np.isfinite(e))):
        raise InputError("std and abs_error need at least 2 finite values each.")
    return _pearson(stats.rankdata(s), stats.rankdata(e))


def _high_frequency_power(image: np.ndarray, cutoff: float) -> float:
    h, w = image.shape
    # A Hann window stops the image borders from leaking power into high frequencies.
    window = np.outer(np.hanning(h), np.hanning(w))
    spectrum = np.abs(np.fft.fft2((image - image.mean()) * window)) ** 2
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    radius = np.sqrt(fy**2 + fx**2)  # cycles per pixel; Nyquist is 0.5
    return float(spectrum[radius > cutoff * 0.5].sum())


def high_frequency_ratio(pred, target, cutoff: float = 0.25) -> float:
    """High-frequency power of the prediction relative to the target's.

    Power is summed over the radial spectrum above `cutoff` times the Nyquist frequency. A
    regression (L1/L2) model gives blurry stains with a ratio well below 1; a GAN should be
    close to 1. Images are compared in their own units (no min-max scaling), so pass both in
    target units.

    Args:
        pred: predicted image, (H, W) or (H, W, C).
        target: measured image of the same shape.
        cutoff: fraction of the Nyquist frequency above which power counts, in (0, 1).

    Returns:
        power ratio (mean over channels); inf if the target has no high-frequency power.
    """
    if not 0 < cutoff < 1:
        raise InputError(f"cutoff must be in (0, 1) (a fraction of Nyquist), got {cutoff}.")
    p, t = _pair(pred, target)
    ratios = []
    for c in range(p.shape[-1]):
        num = _high_frequency_power(p[..., c], cutoff)
        den = _high_frequency_power(t[..., c], cutoff)
        ratios.append(math.inf if den == 0 else num / den)
    return float(np.mean(ratios))
