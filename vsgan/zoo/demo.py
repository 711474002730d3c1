"""`vsgan demo`: stain the held-out quadrant of isl-condition-b, with uncertainty, and score it.

Uses the bundled `isl-nuclei` preset; without it (a fresh checkout before the preset was
trained) it trains a tiny model on the three training quadrants first and says so.
"""

from __future__ import annotations

import time
from pathlib import Path

from vsgan.errors import VsganError

PRESET = "isl-nuclei"


def _model(data_dir):
    from vsgan.zoo.presets import list_pretrained, load_pretrained

    if PRESET in list_pretrained():
        return load_pretrained(PRESET), f"preset {PRESET!r}"
    from vsgan.training.callbacks import schedules
    from vsgan.training.recipes import Recipe, build_model, build_spec

    recipe = Recipe(
        dataset="isl-condition-b",
        dataset_args={"targets": ["dapi"]},
        model=dict(ngf=8, n_downsample=2, n_blocks=2, ndf=8, num_d=2, dropout=0.2, lambda_l1=10),
        patch_size=128,
        batch_size=4,
    )
    from vsgan.data import make_dataset

    spec = build_spec(recipe, data_dir)
    model = build_model(recipe, spec)
    ds = make_dataset(spec, "train", 128, 4, patches_per_field=400, seed=0)
    print("no bundled preset: training a tiny model for ~100 steps first")
    model.fit(ds, epochs=1, verbose=1, callbacks=schedules(model))
    return model, "a tiny model trained just now (no bundled preset)"


def run_demo(
    data_dir: str | None = None,
    out_dir: str | None = None,
    samples: int = 8,
    overwrite: bool = False,
) -> Path:
    """Runs the demo and returns the output folder.

    Args:
        data_dir: folder holding `isl-condition-b/` (default: `$VSGAN_DATA`, Keras cache,
            else a sha256-checked download from the public origin).
        out_dir: output folder; default a new `vsgan-demo-<time>` folder here.
        samples: Monte-Carlo dropout samples.
        overwrite: allow writing into a non-empty `out_dir`.
    """
    from vsgan.datasets import find_data
    from vsgan.evaluation.figures import panel
    from vsgan.evaluation.report import (
        dataset_for_model,
        interval_of,
        print_table,
        score_field,
        write_metrics,
    )
    from vsgan.inference.stain import stain
    from vsgan.io.writers import write_stain

    out = Path(out_dir or f"vsgan-demo-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise VsganError(f"{out} exists and is not empty: pass --overwrite or choose another -o.")
    folder = find_data("isl-condition-b", data_dir, download=True)
    model, source = _model(folder.parent)
    spec, x_idx, y_idx = dataset_for_model(model, "isl-condition-b", folder.parent)
    (field,) = spec.fields_in("test")
    x, y = field.read()
    x, y = x[..., x_idx], y[..., y_idx]
    y0, y1, x0, x1 = field.rects("test", x.shape[:2])[0]
    x, y = x[y0:y1, x0:x1], y[y0:y1, x0:x1]
    print(
        f"staining the held-out quadrant (rows {y0}-{y1 - 1}, columns {x0}-{x1 - 1}) with "
        f"{source}, {samples} Monte-Carlo samples"
    )
    start = time.perf_counter()
    result = stain(model, x, samples=samples, progress=True)
    seconds = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    written = write_stain(out / "heldout", result, model.output_channels, "tiff", overwrite)
    interval = interval_of(result)  # calibrated models: coverage and the hallucination view
    figure = panel(
        x,
        result.mean,
        result.std,
        y,
        out / "heldout_figure.png",
        channel_names=model.output_channels,
        interval=None if interval is None else interval(0.9),
    )
    row = {
        "field": "heldout_quadrant",
        **score_field(result.mean, y, result.std, model.output_channels, interval),
    }
    write_metrics(out, [row, {**row, "field": "mean"}])
    print_table([row, {**row, "field": "mean"}])
    print(f"stained {x.shape[0]}x{x.shape[1]} px in {seconds:.1f} s")
    for path in written:
        print(f"wrote {path}")
    print(f"figure: {figure}\nmetrics: {out / 'metrics.csv'}\noutput folder: {out.resolve()}")
    return out
