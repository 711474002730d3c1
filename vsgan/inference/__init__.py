"""Using a trained model: `stain.stain` (tiles, Monte-Carlo samples, blending, units),
calibrated intervals (`calibration`) and export (SavedModel, ONNX)."""

from vsgan import _lazy

__getattr__, __dir__ = _lazy.attributes(
    __name__,
    {
        "StainResult": ".stain",
        "TileGrid": ".stain",
        "default_precision": ".stain",
        "sample": ".stain",
        "tile_grid": ".stain",
        "export_generator": ".export",
        "calibration": ".calibration",
        "Calibration": ".calibration",
        "calibrate": ".calibration",
        "calibrate_model": ".calibration",
        "calibrate_split": ".calibration",
        "export_onnx": ".export",
        "export_bioimageio": ".bioimageio",
    },
)
