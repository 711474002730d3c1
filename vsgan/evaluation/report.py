"""Scoring a model on a dataset's held-out split: per-field metrics, a table, CSV/JSON, figures."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from vsgan.errors import InputError
from vsgan.io.files import atomic_path

NUCLEAR = re.compile(r"nucle|dapi|hoechst|dna", re.IGNORECASE)
MAX_FIGURES = 8


def dataset_for_model(
    model, dataset: str, data_dir: str | os.PathLike | None = None, **dataset_args
) -> tuple[Any, list[int], list[int]]:
    """A registered dataset and where the model's channels are in it, matched by name.

    Args:
        model: a `Pix2PixHD`; its `input_channels` and `output_channels` are looked up by
            name among the dataset's channels (case and punctuation ignored).
        dataset: a name of the dataset registry, a `PairedDataset` JSON spec, or a folder of
            one's own fields (the folder, or each sub-folder, holds one file per input and
            target channel, named after the model's channels; every field is "test").
        data_dir: where the data lives (default `$VSGAN_DATA`, the Keras cache).
        **dataset_args: the dataset builder's arguments (a preset's `dataset_args`).

    Returns:
        `(spec, input_indices, target_indices)`: the spec and, per model channel, the index
        of the dataset channel that feeds it.
    """
    from vsgan.datasets.real import build
    from vsgan.io.readers import resolve_channels

    if Path(dataset).is_dir() and not str(dataset).endswith(".zarr"):
        from vsgan.data.spec import PairedDataset

        spec = PairedDataset.from_channel_names(
            dataset, model.input_channels, model.output_channels
        )
        return spec, list(range(model.in_channels)), list(range(model.out_channels))
    spec = build(dataset, data_dir, **dataset_args)
    where = f"dataset {dataset!r}"
    x_idx = resolve_channels(spec.input_names, model.input_channels, spec.in_channels, where)
    y_idx = resolve_channels(spec.target_names, model.output_channels, spec.out_channels, where)
    if len(x_idx) != model.in_channels or len(y_idx) != model.out_channels:
        raise InputError(
            f"{where} channels {spec.input_names} -> {spec.target_names} do not map one-to-one "
            f"onto the model's {model.input_channels} -> {model.output_channels}."
        )
    return spec, x_idx, y_idx


def score_field(pred, target, std=None, names=None, interval=None) -> dict[str, float]:
    """Image metrics per channel (and nuclei instance metrics for nuclear stains).

    With a spread (`std`) the row also holds the uncertainty numbers of
    `vsgan.evaluation.uncertainty.uncertainty_report` (Spearman over the field and inside
    the target's foreground, AUROC for the worst 10% of errors, coverage of the Gaussian
    mean +- z std); with a calibrated `interval` the coverage of the calibrated 50-95%
    intervals and the hallucination summary at 90% (`flagged_fraction@90`: predicted
    foreground whose interval reaches the background).

    Args:
        pred: (H, W, C) prediction, target units.
        target: (H, W, C) measured stain.
        std: optional (H, W, C) per-pixel standard deviation.
        names: channel names (nuclear channels get instance metrics).
        interval: optional level -> (lower, upper) of (H, W, C) maps (e.g.
            `StainResult.interval` of a calibrated model).

    Returns:
        Flat dict "<channel>/<metric>" -> value.
    """
    from vsgan.evaluation import instances, metrics, uncertainty

    names = names or [f"stain{i}" for i in range(pred.shape[-1])]
    row: dict[str, float] = {}
    for c, name in enumerate(names):
        p, t = pred[..., c], target[..., c]
        for key, value in metrics.evaluate_pair(p, t).items():
            row[f"{name}/{key}"] = value
        row[f"{name}/hf_ratio"] = metrics.high_frequency_ratio(p, t)
        if std is not None:
            row[f"{name}/std_error_rho"] = metrics.uncertainty_error_correlation(
                std[..., c], np.abs(p - t)
            )
        if std is not None or interval is not None:
            fn = None
            if interval is not None:
                cache: dict[float, tuple[np.ndarray, np.ndarray]] = {}

                def fn(q, c=c, cache=cache):
                    if q not in cache:
                        cache[q] = interval(q)
                    lo, hi = cache[q]
                    return lo[..., c], hi[..., c]

            report = uncertainty.uncertainty_report(p, None if std is None else std[..., c], t, fn)
            row.update({f"{name}/{key}": value for key, value in report.items()})
            if fn is not None:
                _, summary = uncertainty.hallucination(p, *fn(0.9))
                for key in ("flagged_fraction", "flagged_objects"):
                    row[f"{name}/{key}@90"] = summary[key]
        if NUCLEAR.search(name) and min(p.shape) >= 64:
            inst = instances.instance_metrics(p, t)
            for key in ("dice", "jaccard", "f1@0.5", "f1@0.7", "f1@0.9", "mean_f1"):
                if key in inst:
                    row[f"{name}/{key}"] = inst[key]
    return row


def interval_of(result):
    """`result.interval` when the result can give a calibrated interval, else None.

    It can when the model was calibrated and, for a calibration that scales the spread,
    the result has one (it was stained with Monte-Carlo samples or test-time augmentation).
    """
    calibration = result.calibration
    if calibration is None or (calibration.get("scale") == "std" and result.std is None):
        return None
    return result.interval


def evaluate_dataset(
    model,
    dataset: str,
    *,
    data_dir: str | os.PathLike | None = None,
    split: str = "test",
    out_dir: str | os.PathLike | None = None,
    samples: int | None = None,
    tile_size: int | None = None,
    figures: bool = True,
    dataset_args: dict[str, Any] | None = None,
    precision: str | None = None,
) -> list[dict[str, Any]]:
    """Stains every held-out region of `dataset` and scores it against the measured stain.

    Args:
        model: the model to score.
        dataset: see `dataset_for_model`.
        data_dir: where the data lives.
        split: "test" (held out), "val" or "train".
        out_dir: where to write metrics.csv, metrics.json and figures (None: nowhere).
        samples: Monte-Carlo samples (std and its error correlation when > 1); default:
            those of the model's calibration (its intervals are then scored), else 1.
        tile_size: tile side for `vsgan.stain`.
        figures: write a panel per field (the first 8).
        dataset_args: the dataset builder's arguments (a preset's `dataset_args`).
        precision: compute precision for `vsgan.stain` (None: the machine's fast one).

    Returns:
        One dict of metrics per field (and a final "mean" row). With an uncertainty,
        `out_dir` also gets `reliability.png` (empirical vs nominal coverage, pooled over
        the fields).
    """
    from vsgan.evaluation.figures import panel
    from vsgan.evaluation.uncertainty import (
        SWEEP,
        coverage,
        gaussian_interval,
        reliability_figure,
    )
    from vsgan.inference.stain import stain

    calibration = getattr(model, "calibration", None)
    if samples is None:
        needs_std = calibration is not None and calibration.get("scale") == "std"
        samples = int(calibration.get("samples", 1)) if needs_std else 1

    spec, x_idx, y_idx = dataset_for_model(model, dataset, data_dir, **(dataset_args or {}))
    regions = []
    for field in spec.fields_in(split):
        x, y = field.read()
        x, y = x[..., x_idx], y[..., y_idx]
        for y0, y1, x0, x1 in field.rects(split, x.shape[:2]):
            regions.append((field.name, x[y0:y1, x0:x1], y[y0:y1, x0:x1]))
    if not regions:
        raise InputError(f"{dataset} has no {split!r} data.")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    rows = []
    # Pixels inside the interval per nominal level, pooled over fields (reliability diagram).
    inside = {"gaussian": np.zeros(len(SWEEP)), "calibrated": np.zeros(len(SWEEP))}
    pixels, drawn = 0, set()
    for k, (name, x, y) in enumerate(tqdm(regions, desc=f"evaluate {split}", leave=False)):
        name = name if len(regions) < 50 else f"{name}_{k:05d}"
        result = stain(model, x, samples=samples, tile_size=tile_size, precision=precision)
        interval = interval_of(result)
        row = score_field(result.mean, y, result.std, model.output_channels, interval)
        rows.append({"field": name, **row})
        if result.std is not None or interval is not None:
            pixels += y.size
            for i, q in enumerate(SWEEP):
                if result.std is not None:
                    lo, hi = gaussian_interval(result.mean, result.std, q)
                    inside["gaussian"][i] += coverage(y, lo, hi) * y.size
                    drawn.add("gaussian")
                if interval is not None:
                    inside["calibrated"][i] += coverage(y, *interval(q)) * y.size
                    drawn.add("calibrated")
        if figures and out is not None and k < MAX_FIGURES:
            panel(
                x,
                result.mean,
                result.std,
                y,
                out / f"{name}_figure.png",
                channel_names=model.output_channels,
                interval=interval(0.9) if interval is not None else None,
            )
    if out is not None and pixels:
        curves = {
            {"gaussian": "mean +- z std (uncalibrated)", "calibrated": "calibrated"}[key]: (
                np.asarray(SWEEP),
                value / pixels,
            )
            for key, value in inside.items()
            if key in drawn
        }
        reliability_figure(curves, out / "reliability.png")
    keys = [key for key in rows[0] if key != "field"]
    mean = {key: float(np.nanmean([r.get(key, np.nan) for r in rows])) for key in keys}
    rows.append({"field": "mean", **mean})
    if out is not None:
        write_metrics(out, rows)
    return rows


def write_metrics(out: Path, rows: list[dict[str, Any]]) -> None:
    """Writes `metrics.csv` and `metrics.json` (each atomically) into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    keys = list(rows[0])
    with atomic_path(out / "metrics.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(rows, indent=2))


def print_table(rows: list[dict[str, Any]], keys: tuple[str, ...] = ()) -> str:
    """Prints (and returns) the mean row as a metric | value table per channel."""
    mean = rows[-1]
    shown = keys or tuple(k for k in mean if k != "field")
    lines = [f"{'metric':<40} {'mean over ' + str(len(rows) - 1) + ' fields':>22}"]
    lines += [f"{k:<40} {mean[k]:>22.4f}" for k in shown]
    text = "\n".join(lines)
    print(text)
    return text
