"""Evaluation of virtual stains: image metrics, nuclei instance metrics, figures."""

from vsgan.evaluation import figures, instances, metrics
from vsgan.evaluation.figures import panel
from vsgan.evaluation.instances import instance_metrics, segment_nuclei
from vsgan.evaluation.metrics import (
    evaluate_pair,
    high_frequency_ratio,
    ms_ssim,
    nrmse,
    pearson_r,
    psnr,
    ssim,
    uncertainty_error_correlation,
)

__all__ = [
    "evaluate_pair",
    "figures",
    "high_frequency_ratio",
    "instance_metrics",
    "instances",
    "metrics",
    "ms_ssim",
    "nrmse",
    "panel",
    "pearson_r",
    "psnr",
    "segment_nuclei",
    "ssim",
    "uncertainty_error_correlation",
]
