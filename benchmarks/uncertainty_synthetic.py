"""Uncertainty report on synthetic cells: train a small model, let `train` calibrate it on its
validation fields, score its calibrated intervals on fresh fields (another seed).

    python benchmarks/uncertainty_synthetic.py [--out runs/unc-synthetic] [--epochs 6]

Not a test (it trains for minutes); the numbers go in the closing note of issue 13.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from vsgan.evaluation.report import evaluate_dataset
from vsgan.training.recipes import Recipe, train

KEYS = (
    "pearson_r",
    "spearman_field",
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/unc-synthetic")
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    recipe = Recipe(
        dataset="synthetic",
        dataset_args={"n_fields": 12, "size": 128, "targets": ["nuclei"]},
        model={
            "ngf": 16,
            "n_downsample": 2,
            "n_blocks": 2,
            "ndf": 16,
            "num_d": 1,
            "dropout": 0.2,
            "lambda_l1": 10,
        },
        patch_size=64,
        batch_size=4,
        steps_per_epoch=50,
        epochs=args.epochs,
        niter=args.epochs // 2,
        niter_decay=args.epochs - args.epochs // 2,
        val_batches=2,
        precision="float32",
    )
    t = time.perf_counter()
    model = train(recipe, args.out, overwrite=True, verbose=2)
    print(
        f"trained + calibrated in {time.perf_counter() - t:.0f} s; calibration:",
        {k: v for k, v in model.calibration.items() if k not in ("quantiles", "levels", "edges")},
    )
    rows = evaluate_dataset(
        model,
        "synthetic",
        split="train",
        out_dir=f"{args.out}/eval",
        figures=True,
        dataset_args={
            "n_fields": 8,
            "size": 128,
            "seed": 1,
            "val_fraction": 0.0,
            "targets": ["nuclei"],
        },
    )
    mean = rows[-1]
    report = {k: round(float(mean[f"nuclei/{k}"]), 4) for k in KEYS if f"nuclei/{k}" in mean}
    print(json.dumps(report, indent=1))
    assert np.isfinite(list(report.values())).all()


if __name__ == "__main__":
    main()
