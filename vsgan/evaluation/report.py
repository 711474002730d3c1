"""Scoring a model on a dataset's held-out split: per-field metrics, a table, CSV/JSON, figures."""

from __future__ import annotations

import csv
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from vsgan.errors import InputError

NUCLEAR = re.compile(r"nucle|dapi|hoechst|dna", re.IGNORECASE)
MAX_FIGURES = 8


def dataset_for_model(model, dataset: str, data_dir: str | os.PathLike | None = None):
    """The `PairedDataset` of `dataset` with the model's input and target channels.

    Args:
        model: a `Pix2PixHD` whose channel names follow the dataset's files.
        dataset: "isl-condition-b", "mlcp-jurkat" or a `PairedDataset` JSON spec.
        data_dir: where the data lives (default `$VSGAN_DATA`, the Keras cache).
    """
    from vsgan import datasets
    from vsgan.data import PairedDataset

    if dataset == "isl-condition-b":
        planes = [int(re.search(r"(\d+)$", n).group(1)) for n in model.input_channels]
        targets = [n.split("_")[0].lower() for n in model.output_channels]
        return datasets.isl_condition_b(data_dir, planes=planes, targets=targets)
    if dataset == "mlcp-jurkat":
        return datasets.mlcp_jurkat(data_dir, inputs=model.input_channels)
    if os.path.isfile(dataset):
        return PairedDataset.load(dataset)
    raise InputError(
        f"unknown dataset {dataset!r}: use isl-condition-b, mlcp-jurkat or a PairedDataset "
        "JSON spec file."
    )


def score_field(pred, target, std=None, names=None) -> dict[str, float]:
    """Image metrics per channel (and nuclei instance metrics for nuclear stains).

    Args:
        pred: (H, W, C) prediction, target units.
        target: (H, W, C) measured stain.
        std: optional (H, W, C) per-pixel standard deviation.
        names: channel names (nuclear channels get instance metrics).

    Returns:
        Flat dict "<channel>/<metric>" -> value.
    """
    from vsgan.evaluation import instances, metrics

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
        if NUCLEAR.search(name) and min(p.shape) >= 64:
            inst = instances.instance_metrics(p, t)
            for key in ("dice", "jaccard", "f1@0.5", "f1@0.7", "f1@0.9", "mean_f1"):
                if key in inst:
                    row[f"{name}/{key}"] = inst[key]
    return row


def evaluate_dataset(
    model,
    dataset: str,
    *,
    data_dir: str | os.PathLike | None = None,
    split: str = "test",
    out_dir: str | os.PathLike | None = None,
    samples: int = 1,
    tile_size: int | None = None,
    figures: bool = True,
) -> list[dict[str, Any]]:
    """Stains every held-out region of `dataset` and scores it against the measured stain.

    Args:
        model: the model to score.
        dataset: see `dataset_for_model`.
        data_dir: where the data lives.
        split: "test" (held out), "val" or "train".
        out_dir: where to write metrics.csv, metrics.json and figures (None: nowhere).
        samples: Monte-Carlo samples (std and its error correlation when > 1).
        tile_size: tile side for `vsgan.stain`.
        figures: write a panel per field (the first 8).

    Returns:
        One dict of metrics per field (and a final "mean" row).
    """
    from vsgan.evaluation.figures import panel
    from vsgan.inference import stain

    spec = dataset_for_model(model, dataset, data_dir)
    if spec.in_channels != model.in_channels or spec.out_channels != model.out_channels:
        raise InputError(
            f"{dataset} gives {spec.in_channels} -> {spec.out_channels} channels but the model "
            f"takes {model.in_channels} -> {model.out_channels}: pick the matching dataset."
        )
    regions = []
    for field in spec.fields_in(split):
        x, y = field.read()
        for y0, y1, x0, x1 in field.rects(split, x.shape[:2]):
            regions.append((field.name, x[y0:y1, x0:x1], y[y0:y1, x0:x1]))
    if not regions:
        raise InputError(f"{dataset} has no {split!r} data.")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, (name, x, y) in enumerate(tqdm(regions, desc=f"evaluate {split}", leave=False)):
        name = name if len(regions) < 50 else f"{name}_{k:05d}"
        result = stain(model, x, samples=samples, tile_size=tile_size)
        rows.append(
            {"field": name, **score_field(result.mean, y, result.std, model.output_channels)}
        )
        if figures and out is not None and k < MAX_FIGURES:
            panel(
                x,
                result.mean,
                result.std,
                y,
                out / f"{name}_figure.png",
                channel_names=model.output_channels,
            )
    keys = [key for key in rows[0] if key != "field"]
    mean = {key: float(np.nanmean([r.get(key, np.nan) for r in rows])) for key in keys}
    rows.append({"field": "mean", **mean})
    if out is not None:
        _write(out, rows)
    return rows


def _write(out: Path, rows: list[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    keys = list(rows[0])

    def write_csv(f):
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)

    # Both files are complete before either replaces its predecessor.
    written = []
    try:
        for name, write in (
            ("metrics.csv", write_csv),
            ("metrics.json", lambda f: f.write(json.dumps(rows, indent=2))),
        ):
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out)
            written.append((tmp, out / name))
            with os.fdopen(fd, "w", newline="") as f:
                write(f)
        for tmp, final in written:
            os.replace(tmp, final)
    finally:
        for tmp, _ in written:
            if os.path.exists(tmp):
                os.remove(tmp)


def print_table(rows: list[dict[str, Any]], keys: tuple[str, ...] = ()) -> str:
    """Prints (and returns) the mean row as a metric | value table per channel."""
    mean = rows[-1]
    shown = keys or tuple(k for k in mean if k != "field")
    lines = [f"{'metric':<40} {'mean over ' + str(len(rows) - 1) + ' fields':>22}"]
    lines += [f"{k:<40} {mean[k]:>22.4f}" for k in shown]
    text = "\n".join(lines)
    print(text)
    return text
