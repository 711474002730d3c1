"""ONNX parity of the presets: onnxruntime vs Keras, max abs error in model units, per size.

    VSGAN_DATA=../shared/data nice -n 10 python benchmarks/onnx_parity.py [--presets ...]
    [--old-padding]   # also show what the former `(-n) % m` padding gave in ONNX

Inputs: for `isl-nuclei` bottom-right crops of the field (inside the held-out quadrant, rows and
columns 512-1023, up to 512; the 517-wide crop reaches 5 columns into the training area), through
the model's stored normalisation; for other presets seeded N(0, 0.5) noise in model units.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

SIZES = [(512, 512), (301, 517), (13, 9)]


def _inputs(name, model, h, w):
    if name == "isl-nuclei":
        from PIL import Image

        from vsgan.datasets.sources import find_data

        folder = find_data("isl-condition-b", os.environ.get("VSGAN_DATA"))
        planes = [
            np.asarray(Image.open(folder / f"{c}.png"), np.float32)[-h:, -w:]
            for c in model.input_channels
        ]
        return model.preprocessor.normalize_input(np.stack(planes, -1)[None])
    rng = np.random.default_rng(h * 1000 + w)
    return rng.normal(0, 0.5, (1, h, w, model.in_channels)).astype(np.float32)


def _old_padding():
    """Puts back the padding that ONNX got wrong, to show the bug the fix removes."""
    from keras import ops

    from vsgan.models.layers import PadToMultiple

    def call(self, x):
        shape = ops.shape(x)
        for axis in (1, 2):
            n = shape[axis]
            size = ops.maximum(n + (-n) % self.multiple, 2 * self.multiple)
            i = ops.arange(size) % (2 * n)
            x = ops.take(x, ops.where(i < n, i, 2 * n - 1 - i), axis=axis)
        return x

    PadToMultiple.call = call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["isl-nuclei", "jurkat-dna"])
    parser.add_argument("--old-padding", action="store_true")
    args = parser.parse_args()
    if args.old_padding:
        _old_padding()
    import onnxruntime

    import vsgan
    from vsgan.inference.export import onnx_model

    print("| preset | input (H x W x C) | ONNX output | max abs error vs Keras |")
    print("|---|---|---|---|")
    for name in args.presets:
        model = vsgan.load_pretrained(name)
        proto = onnx_model(model)
        session = onnxruntime.InferenceSession(
            proto.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        for h, w in SIZES:
            x = _inputs(name, model, h, w)
            (y,) = session.run(None, {"input": x})
            expected = model.generator.predict(x, verbose=0)
            if y.shape != expected.shape:
                error = f"shape mismatch (Keras {expected.shape[1]} x {expected.shape[2]})"
            else:
                error = f"{np.abs(y - expected).max():.2e}"
            shape = " x ".join(map(str, x.shape[1:]))
            print(f"| {name} | {shape} | {y.shape[1]} x {y.shape[2]} | {error} |", flush=True)


if __name__ == "__main__":
    main()
