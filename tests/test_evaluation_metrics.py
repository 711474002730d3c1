"""`vsgan.evaluation.metrics` and `.instances` against scikit-image, TF and hand-made cases."""

import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage, stats
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vsgan.errors import InputError
from vsgan.evaluation import instances, metrics


def pair(shape=(64, 80), seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    target = ndimage.gaussian_filter(rng.random(shape), 2) * 4000 + 300
    pred = target + noise * target.std() * rng.standard_normal(shape) + 50
    return pred, target


def scaled(x):
    return (x - x.min()) / (x.max() - x.min())


# ---------------------------------------------------------------------------- image metrics


def test_psnr_ssim_match_skimage_on_minmax_scaled_images():
    pred, target = pair()
    p, t = scaled(pred), scaled(target)
    assert metrics.psnr(pred, target) == pytest.approx(
        peak_signal_noise_ratio(t, p, data_range=1.0), rel=1e-12
    )
    assert metrics.ssim(pred, target) == pytest.approx(
        structural_similarity(t, p, data_range=1.0), rel=1e-12
    )
    assert metrics.pearson_r(pred, target) == pytest.approx(np.corrcoef(p.ravel(), t.ravel())[0, 1])


def test_hand_computed_psnr_and_nrmse():
    target = np.array([[0.0, 1.0], [0.0, 1.0]])
    pred = np.array([[0.0, 1.0], [0.0, 0.5]])  # one pixel off by 0.5
    assert metrics.psnr(pred, target) == pytest.approx(10 * math.log10(16))
    assert metrics.nrmse(pred, target) == pytest.approx(0.25)
    # Min-max scaling first: gain and offset do not change either.
    assert metrics.psnr(300 * pred + 7, target) == pytest.approx(10 * math.log10(16))
    assert metrics.psnr(target, target) == math.inf


def test_never_uint16_scaled():
    pred, target = pair(noise=0.3)
    p16, t16 = pred.astype(np.uint16), target.astype(np.uint16)
    ours = metrics.psnr(p16, t16)
    inflated = peak_signal_noise_ratio(t16, p16, data_range=65535)
    assert ours == pytest.approx(metrics.psnr(p16.astype(float), t16.astype(float)))
    assert ours < 30 < inflated


def test_nrmse_and_psnr_agree():
    pred, target = pair(seed=3)
    assert metrics.psnr(pred, target) == pytest.approx(
        -20 * math.log10(metrics.nrmse(pred, target))
    )


def test_identical_and_inverted_images():
    _, target = pair()
    assert metrics.ssim(target, target) == pytest.approx(1.0)
    assert metrics.ms_ssim(target, target) == pytest.approx(1.0)
    assert metrics.pearson_r(-target, target) == pytest.approx(-1.0)
    assert metrics.ssim(-target, target) < 0
    assert math.isnan(metrics.pearson_r(np.ones((16, 16)), target[:16, :16]))


def test_multichannel_is_mean_over_channels():
    p1, t1 = pair(seed=1)
    p2, t2 = pair(seed=2, noise=0.5)
    p, t = np.stack([p1, p2], -1), np.stack([t1, t2], -1)
    for fn in (metrics.psnr, metrics.ssim, metrics.pearson_r, metrics.ms_ssim, metrics.nrmse):
        assert fn(p, t) == pytest.approx((fn(p1, t1) + fn(p2, t2)) / 2)


@pytest.mark.parametrize("shape", [(192, 200), (170, 240)])
def test_ms_ssim_matches_tensorflow(shape):
    pred, target = pair(shape, noise=0.3)
    expected = tf.image.ssim_multiscale(
        scaled(pred)[None, ..., None].astype("float32"),
        scaled(target)[None, ..., None].astype("float32"),
        max_val=1.0,
    )
    assert metrics.ms_ssim(pred, target) == pytest.approx(float(expected[0]), abs=1e-4)


def test_ms_ssim_small_images_and_ordering():
    good, target = pair((40, 40), noise=0.05)
    bad, _ = pair((40, 40), noise=1.0)
    assert 0 <= metrics.ms_ssim(bad, target) < metrics.ms_ssim(good, target) <= 1
    with pytest.raises(InputError, match="at least 11x11"):
        metrics.ms_ssim(good[:8, :8], target[:8, :8])


def test_evaluate_pair_and_validation():
    pred, target = pair()
    out = metrics.evaluate_pair(pred, target)
    assert set(out) == {"psnr", "ssim", "ms_ssim", "pearson_r", "nrmse"}
    assert out["ssim"] == metrics.ssim(pred, target)
    with pytest.raises(InputError, match="differs"):
        metrics.evaluate_pair(pred, target[:-1])
    bad = pred.copy()
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        metrics.psnr(bad, target)
    with pytest.raises(InputError, match="7x7"):
        metrics.ssim(pred[:5, :5], target[:5, :5])


# ---------------------------------------------------------------------------- uncertainty


def test_uncertainty_error_correlation_is_spearman():
    rng = np.random.default_rng(0)
    error = rng.random((30, 30))
    assert metrics.uncertainty_error_correlation(np.exp(3 * error), error) == pytest.approx(1.0)
    assert metrics.uncertainty_error_correlation(-error, error) == pytest.approx(-1.0)
    std = np.round(error + 0.3 * rng.random((30, 30)), 1)  # with ties
    rho = metrics.uncertainty_error_correlation(std, error)
    assert rho == pytest.approx(stats.spearmanr(std.ravel(), error.ravel())[0])
    mask = error > 0.5
    masked = metrics.uncertainty_error_correlation(std, error, mask=mask)
    assert masked == pytest.approx(stats.spearmanr(std[mask], error[mask])[0])
    with pytest.raises(InputError):
        metrics.uncertainty_error_correlation(std, error[:-1])


def test_high_frequency_ratio_separates_sharp_from_blurry():
    rng = np.random.default_rng(0)
    target = ndimage.gaussian_filter(rng.random((128, 128)), 1.0)
    assert metrics.high_frequency_ratio(target, target) == pytest.approx(1.0)
    assert metrics.high_frequency_ratio(2 * target, target) == pytest.approx(4.0)
    blurry = ndimage.gaussian_filter(target, 2.0)  # what an L1 regression gives
    assert metrics.high_frequency_ratio(blurry, target) < 0.2
    noisy = target + 0.05 * rng.standard_normal(target.shape)
    assert metrics.high_frequency_ratio(noisy, target) > 1.5
    with pytest.raises(InputError):
        metrics.high_frequency_ratio(target, target, cutoff=1.5)


# ---------------------------------------------------------------------------- instances


def disks(shape, centres, radius, value=1.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.zeros(shape)
    for cy, cx in centres:
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = value
    return image


CENTRES = [(15, 15), (15, 50), (50, 15), (50, 50), (80, 80)]


def test_segment_separate_and_touching_disks():
    image = disks((100, 100), CENTRES, 8)
    labels = instances.segment_nuclei(image)
    assert labels.max() == len(CENTRES) and labels.dtype == np.int32
    areas = np.bincount(labels.ravel())[1:]
    assert np.all(np.abs(areas - np.pi * 64) < 0.15 * np.pi * 64)
    # Two overlapping disks make one blob: the watershed splits it in two.
    touching = disks((60, 80), [(30, 25), (30, 45)], 11)
    assert ndimage.label(touching > 0)[1] == 1
    assert instances.segment_nuclei(touching, min_distance=7).max() == 2
    assert instances.segment_nuclei(np.zeros((20, 20))).max() == 0
    assert instances.segment_nuclei(image, threshold=2.0).max() == 0  # nothing above it


def test_binary_dice_and_jaccard_by_hand():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :4] = True
    b[0, 2:] = True
    b[1, 2:] = True
    assert instances.binary_dice(a, b) == pytest.approx(2 * 2 / 8)
    assert instances.binary_jaccard(a, b) == pytest.approx(2 / 6)
    assert instances.binary_dice(a & False, b & False) == 1.0


def test_iou_matrix_by_hand():
    pred = np.zeros((4, 6), int)
    target = np.zeros((4, 6), int)
    pred[:2, :2] = 5  # non-consecutive labels are fine
    pred[2:, 4:] = 9
    target[:2, 1:3] = 1
    iou = instances.iou_matrix(pred, target)
    assert iou.shape == (2, 1)
    np.testing.assert_allclose(iou[:, 0], [2 / 6, 0])


def test_object_f1_counts():
    target = ndimage.label(disks((100, 100), CENTRES, 8))[0]
    pred = ndimage.label(disks((100, 100), CENTRES[:-1] + [(85, 20)], 8))[0]
    m = instances.match_objects(pred, target, 0.7)
    assert (m["tp"], m["fp"], m["fn"]) == (4, 1, 1)
    assert m["f1"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 1))
    assert m["ap"] == pytest.approx(4 / 6)


def test_object_f1_sweep_follows_iou_of_shifted_disks():
    target = disks((100, 100), CENTRES, 10)
    pred = disks((100, 100), [(y, x + 3) for y, x in CENTRES], 10)
    iou = ((pred > 0) & (target > 0)).sum() / ((pred > 0) | (target > 0)).sum()
    assert 0.6 < iou < 0.8
    out = instances.instance_metrics(pred, target)
    for t in instances.DEFAULT_IOU_THRESHOLDS:
        assert out[f"f1@{t:g}"] == (1.0 if iou > t else 0.0)
    assert out["n_pred"] == out["n_target"] == len(CENTRES)
    assert out["dice"] == pytest.approx(2 * iou / (1 + iou), abs=0.02)


def test_one_prediction_over_two_targets_matches_neither():
    target = np.zeros((10, 20), int)
    target[:, :10], target[:, 10:] = 1, 2
    pred = np.ones((10, 20), int)
    m = instances.match_objects(pred, target, 0.5)
    assert (m["tp"], m["fp"], m["fn"]) == (0, 1, 2)


def test_instance_metrics_identical_images():
    image = disks((100, 100), CENTRES, 8) * 1000 + np.random.default_rng(0).random((100, 100))
    out = instances.instance_metrics(image, image)
    assert out["dice"] == out["jaccard"] == out["accuracy"] == 1.0
    assert out["mean_f1"] == out["mean_ap"] == 1.0
