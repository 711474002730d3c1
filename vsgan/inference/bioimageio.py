"""bioimage.io model packages (format 0.5): what the BioImage Model Zoo, deepImageJ, ilastik,
QuPath, napari and bioimageio.core consume.

`export_bioimageio(model, "pkg.zip")` writes a zip holding ``rdf.yaml``, the generator twice
(``tensorflow_saved_model_bundle``: the SavedModel of `export_generator`, whose `serve` returns
``{"output": y}``; and ``onnx``: `export_onnx`), a test input and output cut from real data, the
model card as documentation, a cover and citations. Needs ``pip install "vsgan[bioimageio]"``.

Tensors: input ``input`` and output ``output``, float32, axes (batch, y, x, channel) with the
model's channel names; y and x take any multiple of the network's size granularity from twice
that (other sizes work too: the generator pads inside). The package's pre- and postprocessing
reproduce the model's `StainPreprocessor` (`model.preprocessor`), so the package maps raw
intensities to stains in the target's units, as `vsgan.stain` does:

============================================  ===========================================
vsgan normalisation                           bioimage.io processing
============================================  ===========================================
input, dataset-level (fitted ``percentile``,  ``scale_linear`` along channel:
``meanstd``, ``median_iqr``; ``fixed``)       gain ``1/scale``, offset ``-offset/scale``
input, per field ``percentile`` low..high     ``scale_range`` over (y, x), percentiles low,
                                              high (-> [0, 1]), then ``scale_linear`` gain 2,
                                              offset -1 (-> [-1, 1])
input, per field ``meanstd``                  ``zero_mean_unit_variance`` over (y, x)
input, per field ``median_iqr``               none: refused (`InputError`)
input ``identity``                            nothing
target (always dataset-level)                 output ``scale_linear`` along channel:
                                              gain ``scale``, offset ``offset``
============================================  ===========================================

Per-field statistics differ from vsgan's only by bioimage.io's ``eps`` (1e-6 added to the
range or std) and, above a million pixels per channel, by vsgan's subsampled quantiles.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vsgan.data.normalize import Normalization
from vsgan.errors import InputError, VsganError
from vsgan.inference.export import (
    INPUT_NAME,
    ONNX_OPSET,
    OUTPUT_NAME,
    export_generator,
    export_onnx,
    readable_by_all,
    require_extra,
)
from vsgan.io.files import atomic_path, refuse_existing

PIX2PIXHD = {
    "text": "Wang, T.-C., Liu, M.-Y., Zhu, J.-Y., Tao, A., Kautz, J. and Catanzaro, B. "
    "High-Resolution Image Synthesis and Semantic Manipulation with Conditional GANs. "
    "CVPR 2018.",
    "doi": "10.1109/CVPR.2018.00917",
}
DATASET_CITATIONS = {
    "isl-condition-b": {
        "text": "Christiansen, E. M. et al. In Silico Labeling: Predicting Fluorescent Labels "
        "in Unlabeled Images. Cell 173, 792-803 (2018). Data: google/in-silico-labeling "
        "(Apache-2.0).",
        "doi": "10.1016/j.cell.2018.03.040",
    },
    "mlcp-jurkat": {
        "text": "Blasi, T. et al. Label-free cell cycle analysis for high-throughput imaging "
        "flow cytometry. Nature Communications 7, 10256 (2016). Data: BBBC048 via "
        "minh-doan/MLCP.",
        "doi": "10.1038/ncomms10256",
    },
}
LICENSE = "BSD-3-Clause"
TEST_SIZE = 512  # largest test tensor side cut from a real field
SAMPLE_SIZE = 256  # largest sample tensor side


def processing_steps(norm: Normalization, role: str, channels: int) -> list[dict[str, Any]]:
    """bioimage.io processing steps that reproduce a vsgan `Normalization`.

    Args:
        norm: the input normalisation (``role="input"``: raw -> model units, preprocessing)
            or the target's (``role="target"``: model units -> raw, postprocessing).
        role: ``"input"`` or ``"target"``.
        channels: the tensor's channel count (statistics of one channel are broadcast).

    Returns:
        A list of ``{"id": ..., "kwargs": ...}`` steps (empty for an identity).

    Example:
    >>> steps = processing_steps(Normalization.fixed(4400), "target", 1)
    >>> steps[0]["id"], steps[0]["kwargs"]["gain"], steps[0]["kwargs"]["offset"]
    ('scale_linear', [2200.0], [2200.0])
    >>> [s["id"] for s in processing_steps(Normalization(per_field=True), "input", 2)]
    ['scale_range', 'scale_linear']
    """
    if norm.per_field and norm.method not in ("fixed", "identity"):
        if role != "input":
            raise InputError(
                "a per-field normalisation cannot be inverted. Fix: give targets fixed statistics."
            )
        if norm.method == "percentile":
            return [
                {
                    "id": "scale_range",
                    "kwargs": {
                        "axes": ["y", "x"],
                        "min_percentile": norm.low,
                        "max_percentile": norm.high,
                        "eps": 1e-6,
                    },
                },
                {"id": "scale_linear", "kwargs": {"gain": 2.0, "offset": -1.0}},
            ]
        if norm.method == "meanstd":
            return [{"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x"], "eps": 1e-6}}]
        raise InputError(
            f"a per-field {norm.method!r} input normalisation has no bioimage.io equivalent "
            "(bioimage.io centres on a percentile range or the mean, not the median). Fix: "
            "train with per_field 'percentile' or 'meanstd', or dataset-level statistics."
        )
    offset, scale = _stats(norm, channels)
    if role == "input":
        gain, shift = 1.0 / scale, -offset / scale
    else:
        gain, shift = scale, offset
    if np.all(gain == 1.0) and np.all(shift == 0.0):
        return []
    return [
        {
            "id": "scale_linear",
            "kwargs": {
                "axis": "channel",
                "gain": [float(g) for g in gain],
                "offset": [float(s) for s in shift],
            },
        }
    ]


def _stats(norm: Normalization, channels: int) -> tuple[np.ndarray, np.ndarray]:
    offset, scale = norm._params(channels)
    return tuple(np.broadcast_to(np.asarray(v, np.float64), (channels,)) for v in (offset, scale))


def _channel_names(names: Sequence[str] | None, n: int, prefix: str) -> list[str]:
    names = list(names or [])
    return names if len(names) == n else [f"{prefix}{i}" for i in range(n)]


def _synthetic_input(model, rng: np.random.Generator) -> np.ndarray:
    """A smooth random raw field in the input normalisation's range (1, H, W, C_in)."""
    m = model.multiple
    size = 8 * m
    norm = model.preprocessor.input
    c = model.in_channels
    if norm.offset is not None and not norm.per_field:
        offset, scale = _stats(norm, c)
    else:
        offset, scale = np.full(c, 500.0), np.full(c, 400.0)
    coarse = rng.uniform(-1, 1, (1, size // m + 1, size // m + 1, c))
    smooth = np.kron(coarse, np.ones((1, m, m, 1)))[:, :size, :size]
    noise = rng.normal(0, 0.1, smooth.shape)
    return (offset + scale * np.clip(smooth + noise, -1, 1)).astype(np.float32)


def expected_output(model, raw: np.ndarray) -> np.ndarray:
    """vsgan's stain of a raw (1, H, W, C_in) tensor: what the package must reproduce."""
    raw = np.asarray(raw, np.float32)
    pre = model.preprocessor
    norm = pre.for_field(raw[0])
    x = norm.normalize(raw)
    y = model.generator.predict(x, verbose=0)
    return pre.denormalize_target(y).astype(np.float32)


def _zip_folder(folder: Path, out: Path) -> None:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(folder).as_posix())


def _tensor_axes(names: list[str], m: int, reference: str | None) -> list[dict[str, Any]]:
    if reference is None:
        space = {"min": 2 * m, "step": m}
        y = {"type": "space", "id": "y", "size": space}
        x = {"type": "space", "id": "x", "size": dict(space)}
    else:
        y = {"type": "space", "id": "y", "size": {"tensor_id": reference, "axis_id": "y"}}
        x = {"type": "space", "id": "x", "size": {"tensor_id": reference, "axis_id": "x"}}
    return [{"type": "batch"}, y, x, {"type": "channel", "channel_names": names}]


_VALIDATION = """
## Validation

This package's test output is vsgan's own prediction (`vsgan.stain`, one pass, no dropout) for its
test input; `bioimageio test` reproduces it from the raw test input through the package's
preprocessing, each weight format and the postprocessing. Held-out accuracy, where measured, is
reported above.
"""


def _default_readme(model, name: str, pre_steps, post_steps) -> str:
    return (
        f"# {name}\n\nA vsgan Pix2PixHD generator (virtual staining): label-free "
        f"{model.in_channels}-channel input -> {model.out_channels} stain channel(s).\n\n"
        "Input: raw intensities (float32, batch, y, x, channel). Preprocessing "
        f"{[s['id'] for s in pre_steps]} reproduces vsgan's input normalisation; "
        f"postprocessing {[s['id'] for s in post_steps]} maps the generator's output back "
        "to the target's intensity units.\n"
    )


def export_bioimageio(
    model,
    path: str | os.PathLike,
    *,
    name: str | None = None,
    description: str | None = None,
    test_input: np.ndarray | None = None,
    documentation: str | os.PathLike | None = None,
    covers: Sequence[str | os.PathLike] = (),
    cite: Sequence[dict[str, str]] = (),
    authors: Sequence[dict[str, str]] = ({"name": "vsgan contributors"},),
    license: str = LICENSE,
    tags: Sequence[str] = (),
    overwrite: bool = False,
) -> str:
    """Writes a bioimage.io model package (format 0.5) at `path` (a `.zip`), atomically.

    The package is validated with bioimageio.spec before anything is written; run
    ``bioimageio test PKG`` (or `bioimageio.core.test_model`) to check its inference.

    Args:
        model: a `vsgan.Pix2PixHD`.
        path: the `.zip` to create.
        name: the package's name (5-128 letters, digits, ``_+- ()``).
        description: one-line description.
        test_input: raw (H, W, C_in) or (1, H, W, C_in) intensities, e.g. a held-out field;
            default: a synthetic field. The test output is vsgan's stain of it.
        documentation: a Markdown file (the model card); default: a generated README.md.
        covers: cover images (PNG/JPEG), copied under their own names.
        cite: citations ``{"text": ..., "doi": ...}`` beside pix2pixHD's (always cited).
        authors: ``{"name": ...}`` entries.
        license: an SPDX license identifier.
        tags: extra tags.
        overwrite: replace an existing file at `path`.

    Returns:
        The path written.
    """
    require_extra("bioimageio", "bioimage.io export")
    import tensorflow as tf
    import tifffile
    from bioimageio.spec import (
        InvalidDescr,
        ValidationContext,
        build_description,
        save_bioimageio_package,
    )
    from bioimageio.spec.model.v0_5 import ModelDescr

    path = Path(path)
    if path.suffix.lower() != ".zip":
        raise InputError(f"{path}: a bioimage.io package is a .zip file. Fix: name it *.zip.")
    refuse_existing(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = name or "vsgan Pix2PixHD model"
    m = model.multiple
    ins = _channel_names(getattr(model, "input_channels", None), model.in_channels, "input")
    outs = _channel_names(getattr(model, "output_channels", None), model.out_channels, "output")
    pre_steps = processing_steps(model.preprocessor.input, "input", model.in_channels)
    post_steps = processing_steps(model.preprocessor.target, "target", model.out_channels)

    if test_input is None:
        test_input = _synthetic_input(model, np.random.default_rng(0))
    test_input = np.asarray(test_input, np.float32)
    if test_input.ndim == 3:
        test_input = test_input[None]
    if (
        test_input.ndim != 4
        or test_input.shape[0] != 1
        or test_input.shape[-1] != model.in_channels
    ):
        raise InputError(
            f"test_input has shape {test_input.shape}; expected (H, W, {model.in_channels}) "
            f"or (1, H, W, {model.in_channels}). Fix: pass one raw field of the model's inputs."
        )
    h, w = test_input.shape[1:3]
    if min(h, w) < 2 * m or h % m or w % m:
        raise InputError(
            f"test_input is {h} x {w}; the package declares sizes {2 * m} + k * {m}. "
            f"Fix: crop it to multiples of {m}, at least {2 * m}."
        )
    test_output = expected_output(model, test_input)

    with tempfile.TemporaryDirectory(prefix=".vsgan-bioimageio-", dir=path.parent) as tmp:
        root = Path(tmp) / "package"
        root.mkdir()
        export_generator(model, Path(tmp) / "saved_model")
        _zip_folder(Path(tmp) / "saved_model", root / "tf_saved_model.zip")
        export_onnx(model, root / "model.onnx")
        np.save(root / "test_input.npy", test_input)
        np.save(root / "test_output.npy", test_output)
        # sample tensors (images for a viewer): the test tensors' top-left, at most 256 x 256
        sh, sw = (max(2 * m, min(n, SAMPLE_SIZE) // m * m) for n in (h, w))
        tifffile.imwrite(root / "sample_input.tif", test_input[0, :sh, :sw])
        tifffile.imwrite(root / "sample_output.tif", test_output[0, :sh, :sw])
        if documentation is None:
            readme = _default_readme(model, name, pre_steps, post_steps) + _VALIDATION
            (root / "README.md").write_text(readme, encoding="utf-8")
            doc_name = "README.md"
        else:
            doc_name = Path(documentation).name
            if not doc_name.endswith(".md"):
                raise InputError(f"documentation {documentation} must be a Markdown (.md) file.")
            text = Path(documentation).read_text(encoding="utf-8")
            (root / doc_name).write_text(text + _VALIDATION, encoding="utf-8")
        cover_names = []
        for cover in covers:
            shutil.copyfile(cover, root / Path(cover).name)
            cover_names.append(Path(cover).name)
        target_scale = max(abs(s) for s in model.preprocessor.target._params(model.out_channels)[1])
        rdf: dict[str, Any] = {
            "type": "model",
            "format_version": ModelDescr.implemented_format_version,
            "name": name,
            "description": description or f"{name}: virtual staining with a Pix2PixHD generator.",
            "authors": [dict(a) for a in authors],
            "cite": [PIX2PIXHD, *[dict(c) for c in cite]],
            "license": license,
            "documentation": {"source": doc_name},
            "tags": ["virtual-staining", "pix2pixhd", "image-to-image", "vsgan", *tags],
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "inputs": [
                {
                    "id": INPUT_NAME,
                    "description": "raw label-free intensities",
                    "axes": _tensor_axes(ins, m, None),
                    "test_tensor": {"source": "test_input.npy"},
                    "sample_tensor": {"source": "sample_input.tif"},
                    "data": {"type": "float32"},
                    "preprocessing": pre_steps,
                }
            ],
            "outputs": [
                {
                    "id": OUTPUT_NAME,
                    "description": "predicted stain, in the training targets' intensity units",
                    "axes": _tensor_axes(outs, m, INPUT_NAME),
                    "test_tensor": {"source": "test_output.npy"},
                    "sample_tensor": {"source": "sample_output.tif"},
                    "data": {"type": "float32"},
                    "postprocessing": post_steps,
                }
            ],
            "weights": {
                "tensorflow_saved_model_bundle": {
                    "source": "tf_saved_model.zip",
                    "tensorflow_version": tf.__version__.split("-")[0],
                },
                "onnx": {
                    "source": "model.onnx",
                    "opset_version": ONNX_OPSET,
                    "parent": "tensorflow_saved_model_bundle",
                },
            },
            "config": {
                "bioimageio": {
                    # 1e-3 of the generator's [-1, 1] range, in the output's raw units
                    "reproducibility_tolerance": [
                        {
                            "relative_tolerance": 1e-3,
                            "absolute_tolerance": 1e-3 * float(target_scale),
                            "mismatched_elements_per_million": 100,
                        }
                    ]
                },
                "vsgan": {
                    "normalization": model.preprocessor.get_config(),
                    "size_multiple": m,
                },
            },
        }
        if cover_names:
            rdf["covers"] = [{"source": c} for c in cover_names]
        with ValidationContext(root=root, file_name="rdf.yaml", perform_io_checks=True):
            descr = build_description(rdf)
        if isinstance(descr, InvalidDescr):
            raise VsganError(
                "the bioimage.io description is invalid:\n"
                + descr.validation_summary.format()
                + "\nFix: report this as a vsgan bug."
            )
        with atomic_path(path, overwrite=overwrite) as tmp_zip:
            save_bioimageio_package(descr, output_path=tmp_zip)
            readable_by_all(tmp_zip)
    return str(path)
