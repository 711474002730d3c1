"""Evaluation of virtual stains: image metrics, nuclei instance metrics, uncertainty quality,
figures, reports."""

from vsgan import _lazy

__getattr__, __dir__ = _lazy.attributes(
    __name__,
    {
        "figures": ".figures",
        "instances": ".instances",
        "metrics": ".metrics",
        "report": ".report",
        "uncertainty": ".uncertainty",
        "uncertainty_report": ".uncertainty",
        "reliability_figure": ".uncertainty",
        "panel": ".figures",
        "instance_metrics": ".instances",
        "segment_nuclei": ".instances",
        "evaluate_pair": ".metrics",
        "high_frequency_ratio": ".metrics",
        "ms_ssim": ".metrics",
        "nrmse": ".metrics",
        "pearson_r": ".metrics",
        "psnr": ".metrics",
        "ssim": ".metrics",
        "uncertainty_error_correlation": ".metrics",
    },
)
