"""In-graph image metrics for validation during `fit`, as REFERENCE section 3 defines them.

Each image (and channel) is min-max scaled to [0, 1] on its own, then PSNR (data range 1),
SSIM (7x7 uniform window, sample covariance, the scikit-image defaults) and Pearson r are
computed per image and channel and averaged. `vsgan.metrics` has the NumPy versions used
for evaluation; the two agree (tests check it).
"""

from __future__ import annotations

from keras import ops

_EPS = 1e-12


def minmax_scale(x):
    """Scales each image and channel of a (B, H, W, C) batch to [0, 1]."""
    x = ops.cast(x, "float32")
    lo = ops.min(x, axis=(1, 2), keepdims=True)
    hi = ops.max(x, axis=(1, 2), keepdims=True)
    return (x - lo) / ops.maximum(hi - lo, _EPS)


def psnr(pred, target):
    """Mean PSNR in dB over images and channels, after min-max scaling."""
    p, t = minmax_scale(pred), minmax_scale(target)
    mse = ops.mean(ops.square(p - t), axis=(1, 2))
    return ops.mean(10.0 * ops.log10(1.0 / ops.maximum(mse, 1e-10)))


def ssim(pred, target, window: int = 7):
    """Mean SSIM (uniform window, data range 1) over images and channels."""
    p, t = minmax_scale(pred), minmax_scale(target)
    c1, c2 = 0.01**2, 0.03**2
    n = window * window
    cov_norm = n / (n - 1.0)

    def mean(x):
        return ops.average_pool(x, window, strides=1, padding="valid")

    mp, mt = mean(p), mean(t)
    vp = cov_norm * (mean(p * p) - mp * mp)
    vt = cov_norm * (mean(t * t) - mt * mt)
    cpt = cov_norm * (mean(p * t) - mp * mt)
    s = ((2 * mp * mt + c1) * (2 * cpt + c2)) / ((mp * mp + mt * mt + c1) * (vp + vt + c2))
    return ops.mean(s)


def pearson_r(pred, target):
    """Mean Pearson correlation over images and channels (flattened pixels)."""
    p, t = ops.cast(pred, "float32"), ops.cast(target, "float32")
    p = p - ops.mean(p, axis=(1, 2), keepdims=True)
    t = t - ops.mean(t, axis=(1, 2), keepdims=True)
    num = ops.sum(p * t, axis=(1, 2))
    den = ops.sqrt(ops.sum(p * p, axis=(1, 2)) * ops.sum(t * t, axis=(1, 2)))
    return ops.mean(num / ops.maximum(den, _EPS))
