"""Uncertainty quality metrics, calibrated intervals, the hallucination view (issue 13)."""

import json

import numpy as np
import pytest
from PIL import Image

import vsgan
from conftest import TINY
from vsgan.errors import InputError
from vsgan.evaluation import figures, uncertainty
from vsgan.evaluation.report import score_field
from vsgan.inference.calibration import Calibration, calibrate, calibrate_model, shortfall
from vsgan.inference.stain import StainResult, stain

# ------------------------------------------------------------------ metrics, by hand


def test_spearman_matches_the_hand_computed_rank_correlation():
    score = np.array([1.0, 2.0, 3.0, 4.0])
    err = np.array([0.1, 0.3, 0.2, 0.4])
    # ranks 1 2 3 4 vs 1 3 2 4: d^2 = 2, rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert uncertainty.spearman(score, err) == pytest.approx(0.8)
    assert uncertainty.spearman(score, -err) == pytest.approx(-0.8)
    # Inside a mask only those pixels count: (1, 2, 4) vs (0.1, 0.3, 0.4) are in order.
    mask = np.array([True, True, False, True])
    assert uncertainty.spearman(score, err, mask) == pytest.approx(1.0)
    # Ties take average ranks: score ranks 1.5 1.5 3 4, error ranks 1 2 3 4.
    tied = uncertainty.spearman(np.array([1.0, 1.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 4.0]))
    a, b = np.array([1.5, 1.5, 3, 4]) - 2.5, np.array([1, 2, 3, 4]) - 2.5
    assert tied == pytest.approx((a * b).sum() / np.sqrt((a**2).sum() * (b**2).sum()))
    assert np.isnan(uncertainty.spearman(np.ones(4), err))


def test_auroc_is_the_mann_whitney_probability_of_ranking_the_worst_errors_first():
    score = np.array([0.1, 0.4, 0.35, 0.8])
    err = np.array([0.0, 0.0, 1.0, 1.0])
    # positives (worst half): scores 0.35, 0.8; negatives 0.1, 0.4: 3 of 4 pairs ordered.
    assert uncertainty.auroc(score, err, worst=0.5) == pytest.approx(0.75)
    assert uncertainty.auroc(err, err, worst=0.5) == pytest.approx(1.0)
    # A tie between a positive and a negative counts half.
    assert uncertainty.auroc(np.array([0.0, 1.0, 1.0, 2.0]), np.array([0, 0, 1, 1.0]), 0.5) == (
        pytest.approx(0.875)
    )
    rng = np.random.default_rng(0)
    assert uncertainty.auroc(rng.random(20000), rng.random(20000)) == pytest.approx(0.5, abs=0.02)
    with pytest.raises(InputError, match="worst"):
        uncertainty.auroc(score, err, worst=1.5)


def test_coverage_foreground_and_gaussian_interval_by_hand():
    target = np.array([[0.0, 1.0], [2.0, 3.0]])
    assert uncertainty.coverage(target, np.zeros((2, 2)), np.full((2, 2), 1.5)) == 0.5
    assert uncertainty.coverage(target, target, target) == 1.0  # bounds are inclusive
    fg = uncertainty.foreground(np.array([[0.0, 0.0, 10.0], [0.0, 10.0, 10.0]]))
    assert fg.tolist() == [[False, False, True], [False, True, True]]
    lo, hi = uncertainty.gaussian_interval(np.zeros(3), np.ones(3), 0.9)
    assert hi == pytest.approx(np.full(3, 1.6448536)) and lo == pytest.approx(-hi)
    with pytest.raises(InputError, match="shape"):
        uncertainty.coverage(target, np.zeros(3), np.zeros(3))


def test_uncertainty_report_of_a_tiny_field():
    target = np.array([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 10.0, 10.0]])
    mean = np.array([[0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 4.0, 8.0]])
    std = np.array([[0.1, 0.1, 1.0, 0.1], [0.1, 1.0, 3.0, 1.0]])
    row = uncertainty.uncertainty_report(mean, std, target)
    err = np.abs(mean - target)
    assert row["fg_fraction"] == 0.25
    assert row["spearman_field"] == pytest.approx(uncertainty.spearman(std, err))
    # Inside the foreground (the two 10s): std 3 at error 6, std 1 at error 2: rho = 1.
    assert row["spearman_fg"] == pytest.approx(1.0)
    # 90%: mean +- 1.645 std covers the six exact background pixels and neither 10.
    assert row["gauss_coverage@90"] == pytest.approx(6 / 8)
    assert set(row) >= {"auroc_worst10", "auroc_worst10_fg", "gauss_coverage@50"}


def test_hallucination_flags_predicted_structure_whose_interval_reaches_background():
    mean = np.zeros((20, 20))
    mean[2:6, 2:6] = 100.0  # a confident nucleus
    mean[12:16, 12:16] = 100.0  # a doubtful one
    half = np.full(mean.shape, 10.0)
    half[12:16, 12:16] = 150.0
    flags, summary = uncertainty.hallucination(mean, mean - half, mean + half)
    assert flags[12:16, 12:16].all() and flags.sum() == 16
    assert summary["objects"] == 2 and summary["flagged_objects"] == 0.5
    assert summary["flagged_fraction"] == 0.5 and summary["flagged_area"] == 16 / 400


def test_reliability_figure_and_the_panel_hallucination_column(tmp_path):
    q = np.asarray(uncertainty.SWEEP)
    curves = {"ideal": (q, q), "over": (q, q**0.5)}
    path = uncertainty.reliability_figure(curves, tmp_path / "r.png")
    img = np.asarray(Image.open(path))
    assert img.shape[2] == 3 and (img != 255).any()
    rng = np.random.default_rng(0)
    mean = rng.random((32, 32, 1)) * 100
    lo_hi = (mean - 200, mean + 5)  # every pixel's interval reaches background
    with_view = Image.open(
        figures.panel(mean, mean, None, None, tmp_path / "a.png", interval=lo_hi)
    )
    without = Image.open(figures.panel(mean, mean, None, None, tmp_path / "b.png"))
    assert with_view.width - without.width == 32 + figures._PAD
    canvas = np.asarray(with_view).astype(int)
    red = (canvas[..., 0] > 150) & (canvas[..., 1] < 120) & (canvas[..., 2] < 120)
    assert red.sum() > 50  # flagged pixels are drawn in red


# ------------------------------------------------------------------ calibration


def _noisy(rng, shape=(200, 200, 1)):
    """Known noise model: target = mean + sigma * N(0, 1), sigma growing with intensity;
    the 'std' a model reports is sigma off by a factor 3 (a spread, not an interval)."""
    mean = rng.random(shape) * 1000
    sigma = 5 + 0.05 * mean
    target = mean + sigma * rng.standard_normal(shape)
    return mean, sigma / 3, target


@pytest.mark.parametrize("scale", ["std", "none", "shortfall"])
def test_calibrated_intervals_cover_nominal_within_3_points_on_fresh_data(scale):
    rng = np.random.default_rng(1)
    mean, std, target = _noisy(rng)
    cal = calibrate(mean, std if scale == "std" else None, target, scale=scale, samples=8)
    fresh_mean, fresh_std, fresh_target = _noisy(rng)
    for level in (0.5, 0.8, 0.9, 0.95):
        lo, hi = cal.interval(fresh_mean, fresh_std, level)
        got = uncertainty.coverage(fresh_target, lo, hi)
        assert abs(got - level) <= 0.03, (scale, level, got)
    # The uncalibrated Gaussian interval of the misscaled std is far off.
    gauss = uncertainty.coverage(fresh_target, *uncertainty.gaussian_interval(mean, std, 0.9))
    assert gauss < 0.6


def test_intensity_bins_give_each_intensity_its_own_width():
    rng = np.random.default_rng(2)
    mean, _, target = _noisy(rng)
    cal = calibrate(mean, None, target, scale="none", bins=8)
    half = cal.half_width(np.array([[[50.0]], [[950.0]]]), None, 0.9)
    # sigma is 7.5 at 50 and 52.5 at 950: the bright pixel's interval is much wider.
    assert half[1, 0, 0] > 4 * half[0, 0, 0]
    assert len(cal.edges[0]) == 7


def test_calibration_record_is_checked_and_levels_are_interpolated():
    rng = np.random.default_rng(3)
    mean, std, target = _noisy(rng, (60, 60, 1))
    cal = calibrate(mean, std, target, samples=4)
    again = Calibration.from_config(json.loads(json.dumps(cal.get_config())))
    assert again == cal
    h85 = cal.half_width(mean, std, 0.85)
    assert (cal.half_width(mean, std, 0.8) <= h85).all()
    assert (h85 <= cal.half_width(mean, std, 0.9)).all()
    with pytest.raises(InputError, match="level"):
        cal.interval(mean, std, 1.2)
    with pytest.raises(InputError, match="samples=4"):
        cal.interval(mean, None, 0.9)
    broken = cal.get_config()
    broken["quantiles"][0][0] = broken["quantiles"][0][0][::-1]
    with pytest.raises(InputError, match="grow"):
        Calibration.from_config(broken)
    with pytest.raises(InputError, match="keys"):
        Calibration.from_config({"scale": "std"})


def test_shortfall_is_the_neighbourhood_maximum_minus_most_of_the_pixel():
    m = np.zeros((9, 9))
    m[4, 4] = 10.0
    s = shortfall(m, window=3, alpha=0.1)
    assert s[4, 4] == pytest.approx(1.0) and s[3, 3] == pytest.approx(10.0) and s[0, 0] == 0


def _spots(n=128):
    yy, xx = np.mgrid[:n, :n]
    return np.exp(-((yy % 32 - 16) ** 2 + (xx % 32 - 16) ** 2) / 40.0)[..., None]


def test_tune_shortfall_keeps_the_field_rank_then_ranks_inside_the_foreground():
    """Errors drawn from a known shortfall are found; the field floor is a hard constraint;
    without any setting above it, the best field rank wins."""
    mean = _spots()
    noise = np.random.default_rng(1).normal(0, 1, mean.shape)
    target = mean + noise * (shortfall(mean, 21, 0.1) + 0.01)
    window, alpha, rows = uncertainty.tune_shortfall(
        mean, target, windows=(5, 21, 45), alphas=(0.0, 0.1, 0.4), field_min=0.0
    )
    by = {(r["window"], r["alpha"]): r for r in rows}
    assert window == 21 and len(rows) == 9
    assert by[window, alpha]["spearman_foreground"] == max(
        r["spearman_foreground"] for r in rows if r["spearman_field"] >= 0
    )
    err, fg = np.abs(target - mean), uncertainty.foreground(target)
    assert by[45, 0.4]["spearman_foreground"] == pytest.approx(
        uncertainty.spearman(shortfall(mean, 45, 0.4), err, fg)
    )
    floor = sorted(r["spearman_field"] for r in rows)[-2]  # only two settings keep it
    w2, a2, _ = uncertainty.tune_shortfall(
        [mean, mean],
        [target, target],
        windows=(5, 21, 45),
        alphas=(0.0, 0.1, 0.4),
        field_min=floor,
    )
    kept = [r for r in rows if r["spearman_field"] >= floor]
    assert (w2, a2) in {(r["window"], r["alpha"]) for r in kept}
    assert by[w2, a2]["spearman_foreground"] == max(r["spearman_foreground"] for r in kept)
    w3, a3, _ = uncertainty.tune_shortfall(mean, target, windows=(5, 45), field_min=2.0)
    best_field = max((r for r in rows if r["window"] in (5, 45)), key=lambda r: r["spearman_field"])
    assert (w3, a3) == (best_field["window"], best_field["alpha"])
    with pytest.raises(InputError):
        uncertainty.tune_shortfall(mean, target[:64])


# ------------------------------------------------------------------ the model carries it


def _tiny(**kwargs):
    return vsgan.Pix2PixHD(1, 1, dropout=0.2, output_channels=["dapi"], **{**TINY, **kwargs})


def test_interval_round_trips_through_model_save_and_load(tmp_path):
    model = _tiny()
    rng = np.random.default_rng(0)
    fields = [(rng.random((48, 48)), rng.random((48, 48)) * 2 - 1) for _ in range(2)]
    cal = calibrate_model(model, fields, samples=3, scale="std")
    assert model.calibration == cal.get_config() and cal.samples == 3
    before = stain(model, fields[0][0], samples=3)
    lo, hi = before.interval(0.9)
    assert lo.shape == hi.shape == before.mean.shape and (lo < before.mean).all()
    model.save(tmp_path / "m.keras")
    loaded = vsgan.load_pretrained(tmp_path / "m.keras")
    assert loaded.calibration == model.calibration
    after = stain(loaded, fields[0][0], samples=3)
    assert after.calibration == before.calibration
    # The same prediction gets the same interval from the loaded model's calibration.
    same = StainResult(before.mean, before.std, samples=3, calibration=loaded.calibration)
    np.testing.assert_array_equal(same.interval(0.9)[0], lo)
    np.testing.assert_array_equal(same.interval(0.9)[1], hi)
    # An old config (no calibration key) still loads, uncalibrated.
    config = model.get_config()
    config.pop("calibration")
    old = vsgan.Pix2PixHD.from_config(config)
    assert old.calibration is None
    with pytest.raises(InputError, match="not calibrated"):
        stain(old, fields[0][0]).interval(0.9)
    with pytest.raises(InputError, match="channel"):
        _tiny(calibration={**cal.get_config(), "quantiles": cal.quantiles * 2})


def test_score_field_reports_uncertainty_and_calibrated_coverage():
    rng = np.random.default_rng(4)
    mean, std, target = _noisy(rng, (96, 96, 1))
    cal = calibrate(mean, std, target, samples=8)
    row = score_field(mean, target, std, ["dapi"], lambda q: cal.interval(mean, std, q))
    for key in ("spearman_field", "spearman_fg", "auroc_worst10", "coverage@90", "coverage@95"):
        assert np.isfinite(row[f"dapi/{key}"]), key
    assert abs(row["dapi/coverage@90"] - 0.9) < 0.03  # in-sample
    assert 0 <= row["dapi/flagged_fraction@90"] <= 1


def test_predict_writes_the_calibrated_interval_bounds(tmp_path):
    import subprocess
    import sys

    import tifffile

    model = _tiny()
    rng = np.random.default_rng(0)
    calibrate_model(model, [(rng.random((40, 40)), rng.random((40, 40)))], samples=2)
    model.save(tmp_path / "m.keras")
    tifffile.imwrite(tmp_path / "f.tif", rng.integers(0, 4000, (40, 52), dtype=np.uint16))
    out = tmp_path / "out"
    args = [sys.executable, "-m", "vsgan.cli", "predict", tmp_path / "m.keras", tmp_path / "f.tif"]
    run = subprocess.run(
        [*map(str, args), "-o", str(out), "--interval", "0.9", "--figure", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    with tifffile.TiffFile(out / "f_prediction.ome.tif") as tif:
        channels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]["Channel"]
        names = [c["Name"] for c in channels]
        planes = dict(zip(names, tif.asarray()))
    # the calibration's 2 samples were drawn by default, so the std is there too
    assert names == ["dapi_prediction", "dapi_std", "dapi_lower90", "dapi_upper90"]
    lower, upper, mean = planes["dapi_lower90"], planes["dapi_upper90"], planes["dapi_prediction"]
    assert lower.shape == (40, 52) and (lower <= mean).all() and (mean <= upper).all()
    assert (upper > lower).any()
    bad = subprocess.run(
        [*map(str, args), "-o", str(tmp_path / "o2"), "--interval", "1.5"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "level" in bad.stderr and "Traceback" not in bad.stderr


def test_evaluate_dataset_scores_calibrated_intervals_and_draws_the_reliability_diagram(
    tmp_path,
):
    from vsgan.evaluation.report import evaluate_dataset

    model = vsgan.Pix2PixHD(
        1, 1, dropout=0.2, input_channels=["phase"], output_channels=["nuclei"], **TINY
    )
    rng = np.random.default_rng(0)
    calibrate_model(model, [(rng.random((64, 64)), rng.random((64, 64)))], samples=2)
    rows = evaluate_dataset(
        model,
        "synthetic",
        split="val",
        out_dir=tmp_path,
        dataset_args={"n_fields": 4, "size": 64, "targets": ["nuclei"]},
    )
    mean = rows[-1]
    for key in ("spearman_fg", "width_spearman_fg", "coverage@80", "flagged_fraction@90"):
        assert f"nuclei/{key}" in mean, key
    assert (tmp_path / "reliability.png").is_file()
    # The panel gained the "do not trust" column: input, prediction, std, flags, target, error.
    figure = Image.open(next(tmp_path.glob("*_figure.png")))
    assert figure.width == 6 * (64 + figures._PAD) + figures._PAD
