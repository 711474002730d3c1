"""Nuclei instance metrics: does the virtual stain give the same nuclei as the real one?

Nuclei are segmented on both images with a classical method (threshold, then a watershed on
the distance transform to split touching nuclei), then compared as binary masks (Dice,
Jaccard, pixel accuracy) and as objects (F1 and average precision at IoU thresholds 0.5 to
0.9). The object counts follow the seed's evaluation: TP = target objects matched once,
FP = unmatched predicted objects, FN = unmatched target objects, F1 = 2TP / (2TP + FP + FN).

Example:
>>> import numpy as np
>>> from vsgan.evaluation.instances import instance_metrics
>>> yy, xx = np.mgrid[:64, :64]
>>> image = ((yy - 20) ** 2 + (xx - 20) ** 2 < 64).astype(float)
>>> instance_metrics(image, image)["f1@0.7"]
1.0
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.segmentation import relabel_sequential, watershed

from vsgan.errors import InputError

__all__ = [
    "DEFAULT_IOU_THRESHOLDS",
    "binary_dice",
    "binary_jaccard",
    "instance_metrics",
    "iou_matrix",
    "match_objects",
    "segment_nuclei",
]

DEFAULT_IOU_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def _image(image, name: str) -> np.ndarray:
    x = np.asarray(image)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 2 or x.size == 0:
        raise InputError(f"{name} has shape {x.shape}; pass one 2-D (H, W) image channel.")
    if x.dtype.kind not in "biuf":
        raise InputError(f"{name} has dtype {x.dtype}; pass a numeric image.")
    if not np.all(np.isfinite(x)):
        raise InputError(f"{name} contains NaN or Inf; replace them first.")
    return x


def segment_nuclei(
    image,
    threshold: float | None = None,
    *,
    sigma: float = 1.0,
    min_distance: int = 5,
    min_size: int = 16,
) -> np.ndarray:
    """Labels nuclei by threshold + distance-transform watershed.

    Args:
        image: 2-D nuclear stain (any units).
        threshold: foreground threshold in the image's units (after smoothing); Otsu's
            threshold of the smoothed image when None.
        sigma: Gaussian smoothing before thresholding, in pixels (0 for none).
        min_distance: smallest distance between two nucleus centres, in pixels; raise it to
            merge over-split large nuclei.
        min_size: foreground objects smaller than this many pixels are dropped.

    Returns:
        int32 label image, 0 = background, nuclei numbered 1..N.
    """
    x = _image(image, "image").astype(np.float64)
    if sigma > 0:
        x = ndimage.gaussian_filter(x, sigma)
    if threshold is None:
        if x.max() <= x.min():
            return np.zeros(x.shape, np.int32)
        threshold = float(threshold_otsu(x))
    mask = x > threshold
    mask = ndimage.binary_fill_holes(mask)
    components, _ = ndimage.label(mask)
    if min_size > 1:
        # By hand: skimage renamed remove_small_objects' size argument in 0.26.
        small = np.bincount(components.ravel()) < min_size
        small[0] = False
        mask &= ~small[components]
        components[~mask] = 0
    if not mask.any():
        return np.zeros(x.shape, np.int32)
    distance = ndimage.distance_transform_edt(mask)
    peaks = peak_local_max(
        distance, min_distance=max(1, int(min_distance)), labels=components, exclude_border=False
    )
    markers = np.zeros(x.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # A component with a flat distance plateau may get no peak: seed it with itself.
    unseeded = np.setdiff1d(np.unique(components[mask]), np.unique(components[markers > 0]))
    for i, comp in enumerate(unseeded, start=len(peaks) + 1):
        markers[components == comp] = i
    labels = watershed(-distance, markers, mask=mask)
    return relabel_sequential(labels)[0].astype(np.int32)


def binary_dice(pred_mask, target_mask) -> float:
    """Dice coefficient 2|A and B| / (|A| + |B|) of two masks (1.0 if both are empty)."""
    a, b = np.asarray(pred_mask) > 0, np.asarray(target_mask) > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def binary_jaccard(pred_mask, target_mask) -> float:
    """Jaccard index |A and B| / |A or B| of two masks (1.0 if both are empty)."""
    a, b = np.asarray(pred_mask) > 0, np.asarray(target_mask) > 0
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def iou_matrix(pred_labels, target_labels) -> np.ndarray:
    """Intersection over union of every predicted object with every target object.

    Args:
        pred_labels: 2-D label image, labels 1..P (0 = background).
        target_labels: label image of the same shape, labels 1..T.

    Returns:
        (P, T) float array; row i is predicted label i + 1, column j target label j + 1.
    """
    p = relabel_sequential(np.asarray(pred_labels).astype(np.int64))[0]
    t = relabel_sequential(np.asarray(target_labels).astype(np.int64))[0]
    if p.shape != t.shape:
        raise InputError(f"label images differ in shape: {p.shape} vs {t.shape}.")
    n_p, n_t = int(p.max()), int(t.max())
    # Joint histogram of (pred label, target label) gives every intersection in one pass.
    joint = np.bincount((p * (n_t + 1) + t).ravel(), minlength=(n_p + 1) * (n_t + 1))
    joint = joint.reshape(n_p + 1, n_t + 1)
    area_p, area_t = joint.sum(axis=1), joint.sum(axis=0)
    inter = joint[1:, 1:].astype(np.float64)
    union = area_p[1:, None] + area_t[None, 1:] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_objects(pred_labels, target_labels, iou_threshold: float = 0.7) -> dict[str, float]:
    """Object-level counts and F1 at one IoU threshold.

    Pairs with IoU strictly above the threshold are matched one-to-one, greedily by IoU (for
    thresholds >= 0.5 any such pair is already unique).

    Args:
        pred_labels: 2-D label image of the prediction.
        target_labels: 2-D label image of the target.
        iou_threshold: minimum IoU (exclusive) of a match.

    Returns:
        dict with "tp", "fp", "fn", "precision", "recall", "f1" and "ap" (TP / (TP+FP+FN)).
    """
    iou = iou_matrix(pred_labels, target_labels)
    n_p, n_t = iou.shape
    pi, ti = np.nonzero(iou > iou_threshold)
    order = np.argsort(-iou[pi, ti], kind="stable")
    used_p, used_t = set(), set()
    for k in order:
        if pi[k] not in used_p and ti[k] not in used_t:
            used_p.add(pi[k])
            used_t.add(ti[k])
    tp = len(used_t)
    fp, fn = n_p - tp, n_t - tp
    denom = 2 * tp + fp + fn
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": 1.0 if n_p == 0 else tp / n_p,
        "recall": 1.0 if n_t == 0 else tp / n_t,
        "f1": 1.0 if denom == 0 else 2 * tp / denom,
        "ap": 1.0 if denom == 0 else tp / (tp + fp + fn),
    }


def instance_metrics(
    pred,
    target,
    *,
    thresholds=DEFAULT_IOU_THRESHOLDS,
    pred_threshold: float | None = None,
    target_threshold: float | None = None,
    **segment_kwargs,
) -> dict[str, float]:
    """Segments nuclei in prediction and target and scores the prediction's nuclei.

    Args:
        pred: 2-D predicted nuclear stain.
        target: 2-D measured nuclear stain.
        thresholds: IoU thresholds of the object F1 sweep.
        pred_threshold: foreground threshold of the prediction (Otsu when None).
        target_threshold: foreground threshold of the target (Otsu when None).
        **segment_kwargs: passed to `segment_nuclei` (sigma, min_distance, min_size).

    Returns:
        dict with "dice", "jaccard", "accuracy" (binary masks), "n_pred", "n_target",
        "f1@<t>" and "ap@<t>" per threshold, and "mean_f1" / "mean_ap" over thresholds.
    """
    pred_labels = segment_nuclei(pred, pred_threshold, **segment_kwargs)
    target_labels = segment_nuclei(target, target_threshold, **segment_kwargs)
    if pred_labels.shape != target_labels.shape:
        raise InputError(f"pred {pred_labels.shape} and target {target_labels.shape} differ.")
    a, b = pred_labels > 0, target_labels > 0
    out: dict[str, float] = {
        "dice": binary_dice(a, b),
        "jaccard": binary_jaccard(a, b),
        "accuracy": float(np.mean(a == b)),
        "n_pred": int(pred_labels.max()),
        "n_target": int(target_labels.max()),
    }
    f1s, aps = [], []
    for t in thresholds:
        m = match_objects(pred_labels, target_labels, float(t))
        out[f"f1@{float(t):g}"] = m["f1"]
        out[f"ap@{float(t):g}"] = m["ap"]
        f1s.append(m["f1"])
        aps.append(m["ap"])
    out["mean_f1"] = float(np.mean(f1s))
    out["mean_ap"] = float(np.mean(aps))
    return out
