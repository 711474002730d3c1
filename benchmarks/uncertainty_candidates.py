"""Which uncertainty ranks the errors inside the nuclei? Issue 13, item 3, for `isl-nuclei`.

Stains the ISL validation region and the held-out quadrant with every candidate (MC dropout at
three rates, test-time augmentation, one deterministic pass), scores each candidate's Spearman
rank correlation with |error| over the field and inside the target's Otsu foreground, its AUROC
for the worst 10% of errors, and its cost per field; then the calibrations' coverage.

    VSGAN_DATA=../shared/data python benchmarks/uncertainty_candidates.py [--out table.json]
        [--model isl-nuclei|run/model_best.keras] [--snapshots run/snapshots --last 8]

With `--snapshots` (a run trained with ``"snapshots": true``) it adds a snapshot ensemble: the
generators of the last epochs along the learning-rate decay, one pass each, their spread.

Numbers of one run are in weights/isl-nuclei.md (the shared 2-core CPU; costs vary with load).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from vsgan.evaluation.report import dataset_for_model
from vsgan.evaluation.uncertainty import auroc, coverage, foreground, spearman
from vsgan.inference.calibration import Calibration, calibrate, shortfall
from vsgan.inference.stain import stain
from vsgan.models import Pix2PixHD


def _set_dropout(model, rate: float) -> None:
    for layer in model.generator._flatten_layers():
        if type(layer).__name__ == "ResnetBlock" and layer.drop is not None:
            layer.drop.rate = rate
    model.generator.__dict__.pop("_vsgan_stochastic_pass", None)  # retrace with the new rate


def _timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None, help="write the table as JSON here")
    parser.add_argument("--model", default="isl-nuclei", help="a preset or a .keras file")
    parser.add_argument("--snapshots", default=None, help="a run's snapshots/ folder")
    parser.add_argument("--last", type=int, default=8, help="snapshots in the ensemble")
    args = parser.parse_args()
    model = Pix2PixHD.from_preset(args.model)
    members = []
    if args.snapshots:
        members = sorted(Path(args.snapshots).glob("epoch_*.weights.h5"))[-args.last :]
        snap = Pix2PixHD.from_preset(args.model)
    spec, xi, yi = dataset_for_model(
        model, "isl-condition-b", os.environ.get("VSGAN_DATA"), targets=["dapi"]
    )
    field = spec.fields[0]
    x, y = field.read()
    x, y = x[..., xi], y[..., yi].astype(np.float64)
    maps, cost = {}, {}
    for split in ("val", "test"):
        y0, y1, x0, x1 = field.rects(split)[0]
        xr = x[y0:y1, x0:x1]
        maps[split, "target"] = y[y0:y1, x0:x1, 0]
        r, cost["single"] = _timed(stain, model, xr)
        maps[split, "single"] = r.mean[..., 0]
        r, cost["tta"] = _timed(stain, model, xr, tta=True)
        maps[split, "tta_mean"], maps[split, "tta_std"] = r.mean[..., 0], r.std[..., 0]
        for rate, n in ((0.2, 16), (0.1, 8), (0.4, 8)):
            _set_dropout(model, rate)
            r, cost[f"mc{rate}"] = _timed(stain, model, xr, samples=n)
            maps[split, f"mc{rate}_mean"] = r.mean[..., 0]
            maps[split, f"mc{rate}_std"] = r.std[..., 0]
        _set_dropout(model, 0.2)
        if members:
            t = time.perf_counter()
            preds = []
            for path in members:
                snap.generator.load_weights(path)
                preds.append(stain(snap, xr).mean[..., 0])
            cost["snap"] = time.perf_counter() - t
            maps[split, "snap_mean"] = np.mean(preds, 0)
            maps[split, "snap_std"] = np.std(preds, 0)

    def signal(split):
        m = maps[split, "mc0.2_mean"]
        return np.maximum(m - np.median(m[m < np.percentile(m, 50)]), 0)

    def head_features(split):
        m, s = maps[split, "mc0.2_mean"], maps[split, "mc0.2_std"]
        cols = [
            m,
            s,
            signal(split),
            ndimage.gaussian_gradient_magnitude(m, 2),
            ndimage.gaussian_filter(m, 2),
            ndimage.gaussian_filter(m, 8),
            ndimage.gaussian_filter(s, 4),
            maps[split, "tta_std"],
        ]
        return np.stack([c.ravel() for c in cols], 1)

    # A learned error head: least squares of |error| on features, fit on the validation region.
    fv = head_features("val")
    mu, sd = fv.mean(0), fv.std(0) + 1e-12
    err_v = np.abs(maps["val", "mc0.2_mean"] - maps["val", "target"]).ravel()
    w, *_ = np.linalg.lstsq(np.c_[np.ones(len(fv)), (fv - mu) / sd], err_v, rcond=None)
    # The model's own shortfall calibration when it ships one (its tuned window and alpha),
    # else the default shortfall fitted on the validation region.
    stored = model.calibration and Calibration.from_config(model.calibration)
    shipped = (
        stored
        if stored and stored.scale == "shortfall"
        else calibrate(
            maps["val", "single"][..., None],
            None,
            maps["val", "target"][..., None],
            scale="shortfall",
            bins=1,
        )
    )
    candidates = {
        "MC dropout std (p=0.2, 16 samples)": ("mc0.2", lambda s: maps[s, "mc0.2_std"], "mc0.2"),
        "MC dropout std (p=0.1, 8 samples)": ("mc0.1", lambda s: maps[s, "mc0.1_std"], "mc0.1"),
        "MC dropout std (p=0.4, 8 samples)": ("mc0.4", lambda s: maps[s, "mc0.4_std"], "mc0.4"),
        "TTA spread (8 views)": ("tta", lambda s: maps[s, "tta_std"], "tta"),
        **(
            {
                f"snapshot ensemble std ({len(members)} epochs)": (
                    "snap",
                    lambda s: maps[s, "snap_std"],
                    "snap",
                )
            }
            if members
            else {}
        ),
        "predicted intensity (1 pass)": ("single", lambda s: maps[s, "single"], "single"),
        "MC std x predicted signal": ("mc0.2", lambda s: maps[s, "mc0.2_std"] * signal(s), "mc0.2"),
        "MC + TTA std": (
            "mc0.2",
            lambda s: np.hypot(maps[s, "mc0.2_std"], maps[s, "tta_std"]),
            "mc0.2+tta",
        ),
        "learned error head (linear, fit on val)": (
            "mc0.2",
            lambda s: (
                np.c_[np.ones(maps[s, "single"].size), (head_features(s) - mu) / sd] @ w
            ).reshape(maps[s, "single"].shape),
            "mc0.2+tta",
        ),
        "neighbourhood shortfall, calibrated (shipped)": (
            "single",
            lambda s: shipped.half_width(maps[s, "single"][..., None], None, 0.9)[..., 0],
            "single",
        ),
    }
    table = []
    for name, (mean_key, score, cost_key) in candidates.items():
        # cost: seconds for the held-out quadrant (the last split stained)
        row = {"candidate": name, "cost_s": sum(cost[k] for k in cost_key.split("+"))}
        for split in ("val", "test"):
            mkey = mean_key if mean_key in ("single",) else f"{mean_key}_mean"
            if mean_key in ("tta", "snap"):
                mkey = f"{mean_key}_mean"
            t = maps[split, "target"]
            err = np.abs(maps[split, mkey] - t)
            fg = foreground(t)
            sc = score(split)
            row[f"{split}_field"] = spearman(sc, err)
            row[f"{split}_fg"] = spearman(sc, err, fg)
            row[f"{split}_auroc"] = auroc(sc, err)
            row[f"{split}_auroc_fg"] = auroc(sc, err, mask=fg)
        table.append(row)
        print(
            f"{name:<48} {row['cost_s']:6.1f} s | val {row['val_field']:+.3f} "
            f"{row['val_fg']:+.3f} | test {row['test_field']:+.3f} {row['test_fg']:+.3f}",
            flush=True,
        )
    for label, cal in (
        (f"shortfall, {len(shipped.edges[0]) + 1} bin(s) (shipped)", shipped),
        (
            "std (16 MC), 8 bins",
            calibrate(
                maps["val", "mc0.2_mean"][..., None],
                maps["val", "mc0.2_std"][..., None],
                maps["val", "target"][..., None],
                samples=16,
            ),
        ),
    ):
        key, std = ("single", None) if cal.scale == "shortfall" else ("mc0.2_mean", "mc0.2_std")
        m = maps["test", key][..., None]
        s = None if std is None else maps["test", std][..., None]
        cov = [
            coverage(maps["test", "target"][..., None], *cal.interval(m, s, q))
            for q in (0.5, 0.8, 0.9, 0.95)
        ]
        print(f"coverage {label:<28}", " ".join(f"{c:.3f}" for c in cov))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"candidates": table, "shortfall": shortfall.__doc__}, f, indent=1)


if __name__ == "__main__":
    main()
