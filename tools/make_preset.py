"""Evaluate a finished training run on its held-out split and write it as a bundled preset.

    python tools/make_preset.py RUN_DIR NAME DATASET [--baseline BASELINE_RUN | --keep-baseline]
        [--samples 8]
        [--calibrate shortfall|std|none --bins N --cal-samples N [--tune-shortfall]]
        [--average-last K]

The model is the run's best epoch by whole-field validation Pearson r (`model_best.keras`;
`--last` takes `model.keras`). `--average-last K` averages the generator weights of the
run's last K epoch snapshots and ships that average instead when its validation Pearson r
is at least the best epoch's (a rule fixed before the test split is looked at). With
`--calibrate`, its intervals are calibrated again on the dataset's validation split (never
trained on, not the test split) before it is evaluated; `--tune-shortfall` first picks the
shortfall's window and alpha on that split (`vsgan.evaluation.uncertainty.tune_shortfall`:
the best rank of the error inside the nuclei among the settings that keep the field-level
rank >= 0.6) and records the grid.

Writes weights/NAME.weights.h5, the preset record weights/NAME.json (recipe, dataset and its
arguments, config, channels, normalisation, calibration, sha256, held-out metrics, training
facts), weights/NAME_heldout.png and weights/NAME_reliability.png, and prints the numbers the
model card (weights/NAME.md, written by hand) quotes.
"""

import argparse
import csv
import json
import os
from pathlib import Path

import numpy as np

import vsgan
from vsgan.evaluation.report import evaluate_dataset
from vsgan.zoo import presets as zoo

REPO = Path(__file__).resolve().parents[1]


def summary(rows, channel):
    mean = rows[-1]
    keys = (
        "pearson_r",
        "ssim",
        "psnr",
        "nrmse",
        "ms_ssim",
        "hf_ratio",
        "f1@0.5",
        "dice",
        "std_error_rho",
        "spearman_fg",
        "auroc_worst10",
        "width_spearman_field",
        "width_spearman_fg",
        "coverage@50",
        "coverage@80",
        "coverage@90",
        "coverage@95",
        "flagged_fraction@90",
    )
    return {k: mean[f"{channel}/{k}"] for k in keys if f"{channel}/{k}" in mean}


def run_facts(run: Path):
    history = list(csv.DictReader(open(run / "history.csv")))
    recipe = json.loads((run / "recipe.json").read_text())
    seconds = os.path.getmtime(run / "history.csv") - os.path.getmtime(run / "recipe.json")
    steps = recipe["steps_per_epoch"] * len(history) if recipe["patch_size"] else None
    return recipe, {"epochs": len(history), "steps": steps, "wall_time_s": round(seconds)}


def val_pearson(model, spec) -> float:
    """Mean whole-region Pearson r over the validation split (one pass)."""
    from vsgan.evaluation.metrics import pearson_r
    from vsgan.inference.calibration import split_fields

    fields = split_fields(model, spec, "val")
    return float(np.mean([pearson_r(vsgan.stain(model, x).mean, y) for x, y in fields]))


def average_if_better(model, run: Path, spec, k: int, facts: dict):
    """The weight average of the last `k` snapshots when it validates at least as well."""
    from vsgan.models import Pix2PixHD
    from vsgan.training.callbacks import average_snapshots

    files = sorted((run / "snapshots").glob("epoch_*.weights.h5"))[-k:]
    averaged = Pix2PixHD.from_config(model.get_config())
    averaged.set_weights(model.get_weights())
    average_snapshots(averaged.generator, files)
    mine, theirs = val_pearson(averaged, spec), val_pearson(model, spec)
    shipped = mine >= theirs
    facts["weight_average"] = {
        "snapshots": [f.name for f in files],
        "val_pearson_r": round(mine, 4),
        "selected_val_pearson_r": round(theirs, 4),
        "shipped": shipped,
    }
    print("weight average", facts["weight_average"])
    return averaged if shipped else model


def main():
    p = argparse.ArgumentParser()
    p.add_argument("run")
    p.add_argument("name")
    p.add_argument("dataset")
    p.add_argument("--baseline")
    p.add_argument(
        "--keep-baseline", action="store_true", help="carry the current record's L1 baseline over"
    )
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--data", default=os.environ.get("VSGAN_DATA"))
    p.add_argument("--input-names", nargs="*")
    p.add_argument("--output-names", nargs="*")
    p.add_argument("--description", default="")
    p.add_argument("--last", action="store_true", help="the last epoch, not the best")
    p.add_argument("--calibrate", choices=("shortfall", "std", "none"))
    p.add_argument("--bins", type=int, default=8)
    p.add_argument("--cal-samples", type=int, help="Monte-Carlo samples of a std calibration")
    p.add_argument("--tune-shortfall", action="store_true", help="pick window/alpha on val")
    p.add_argument("--average-last", type=int, help="weight-average the last K snapshots")
    args = p.parse_args()

    run = Path(args.run)
    best = run / "model_best.keras"
    model = vsgan.load_pretrained(best if best.exists() and not args.last else run / "model.keras")
    channel = model.output_channels[0]
    recipe, facts = run_facts(run)
    if best.exists() and not args.last:
        facts["best_epoch"] = json.loads((run / "model_best.keras.json").read_text())["epoch"]
    tuning = None
    spec = None
    if args.calibrate or args.average_last:
        from vsgan.evaluation.report import dataset_for_model

        spec, _, _ = dataset_for_model(
            model, args.dataset, args.data, **recipe.get("dataset_args", {})
        )
    if args.average_last:
        model = average_if_better(model, run, spec, args.average_last, facts)
    if args.calibrate:
        from vsgan.evaluation.uncertainty import tune_shortfall
        from vsgan.inference.calibration import ALPHA, WINDOW, calibrate_split, split_fields

        window, alpha = WINDOW, ALPHA
        if args.tune_shortfall:
            fields = list(split_fields(model, spec, "val"))
            means = [vsgan.stain(model, x).mean for x, _ in fields]
            targets = [np.asarray(y, np.float32) for _, y in fields]
            window, alpha, rows = tune_shortfall(means, targets)
            tuning = {"split": "val", "field_min": 0.6, "window": window, "alpha": alpha}
            tuning["rows"] = rows
            for r in rows:
                print("shortfall", r)
        cal = calibrate_split(
            model,
            spec,
            "val",
            scale=args.calibrate,
            bins=args.bins,
            samples=args.cal_samples,
            window=window,
            alpha=alpha,
        )
        print("calibration", cal.scale, "bins", len(cal.edges[0]) + 1, cal.window, cal.alpha)
    out = run / "heldout"
    rows = evaluate_dataset(
        model, args.dataset, data_dir=args.data, out_dir=out, figures=True, samples=1
    )
    sampled = evaluate_dataset(
        model, args.dataset, data_dir=args.data, samples=args.samples, figures=False
    )
    metrics = {
        "test": summary(rows, channel),
        f"test_mean_of_{args.samples}_mc_samples": summary(sampled, channel),
    }
    print("GAN", json.dumps(metrics, indent=1))
    recipe.pop("data", None)  # where it lived on the training machine: not part of the record
    card = {
        "description": args.description,
        "dataset": args.dataset,
        "dataset_args": recipe.get("dataset_args", {}),
        "recipe": recipe,
        "metrics": metrics,
        "training": facts,
    }
    if tuning:
        card["shortfall_tuning"] = tuning
    if args.keep_baseline:
        previous = json.loads((REPO / "weights" / f"{args.name}.json").read_text())
        card["baseline_l1"] = previous["baseline_l1"]
    if args.baseline:
        base_run = Path(args.baseline)  # its best epoch too, by the same validation
        base_best = base_run / "model_best.keras"
        base = vsgan.load_pretrained(base_best if base_best.exists() else base_run / "model.keras")
        brows = evaluate_dataset(base, args.dataset, data_dir=args.data, figures=False, samples=1)
        card["baseline_l1"] = {"test": summary(brows, channel), **run_facts(Path(args.baseline))[1]}
        print("L1 baseline", json.dumps(card["baseline_l1"], indent=1))
    if args.input_names:  # names users see: the dataset's file stems
        model.input_channels[:] = args.input_names
        model._config["input_channels"] = list(args.input_names)
    if args.output_names:
        model.output_channels[:] = args.output_names
        model._config["output_channels"] = list(args.output_names)
    info = zoo.save_preset(model, args.name, REPO / "weights", **card)
    figures = sorted(out.glob("*_figure.png"))
    if figures:
        (REPO / "weights" / f"{args.name}_heldout.png").write_bytes(figures[0].read_bytes())
    if (out / "reliability.png").exists():
        reliability = (out / "reliability.png").read_bytes()
        (REPO / "weights" / f"{args.name}_reliability.png").write_bytes(reliability)
    print(
        "wrote",
        info["weights"],
        info["sha256"],
        os.path.getsize(REPO / "weights" / info["weights"]),
    )
    np.set_printoptions(precision=4)


if __name__ == "__main__":
    main()
