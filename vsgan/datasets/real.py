"""`PairedDataset` specs of the real datasets: isl-condition-b, mlcp-jurkat, VSCyto2D A549.

Example (with the data folder in `$VSGAN_DATA`; `download=True` fetches it):
>>> spec = build("isl-condition-b", targets=["dapi"])
>>> spec.in_channels, spec.target_names
(13, ['dapi_confocal_maxproj'])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vsgan.data.normalize import Normalization
from vsgan.data.spec import Field, PairedDataset, Source
from vsgan.data.splits import Rect, split_regions
from vsgan.datasets.sources import find_data
from vsgan.errors import InputError
from vsgan.io import ome_zarr

ISL_SIZE = 1024
ISL_TEST_REGION: Rect = (512, 1024, 512, 1024)  # bottom-right quadrant: held out, never trained on
ISL_PLANES = tuple(range(13))
ISL_TARGETS = ("dapi", "map2", "nfh")
JURKAT_TEST_EVERY = 10


def isl_condition_b(
    data_dir: str | Path | None = None,
    *,
    planes: Sequence[int] = ISL_PLANES,
    targets: Sequence[str] = ISL_TARGETS,
    val_fraction: float = 0.25,
    min_val_size: int = 256,
    download: bool = False,
) -> PairedDataset:
    """In Silico Labeling condition B: phase z-stack -> DAPI, MAP2, NFH on one 1024x1024 field.

    Split spatially: test = rows 512-1023, columns 512-1023 (README of the data); validation is a
    strip of the remaining area (`split_regions`); training is the rest.

    Args:
        data_dir: folder holding ``isl-condition-b/`` (or the files); see `find_data`.
        planes: phase z-planes used as input channels (0..12).
        targets: stains among ``("dapi", "map2", "nfh")``.
        val_fraction: fraction of the non-test area for validation.
        min_val_size: the validation strip's smallest side (at least the patch size).
        download: fetch from GitHub (sha256-checked) when not found locally.

    Returns:
        The spec; channels named by file stem (``phase_contrast_zNN``,
        ``dapi_confocal_maxproj``, ...); dataset-level percentile normalisations,
        fitted on the training pixels when first used.
    """
    folder = find_data("isl-condition-b", data_dir, download=download)
    targets = [t.split("_")[0].lower() for t in targets]  # "dapi" or "dapi_confocal_maxproj"
    bad = [t for t in targets if t not in ISL_TARGETS]
    if bad or not targets:
        raise InputError(f"unknown ISL targets {bad}; choose from {ISL_TARGETS}.")
    if not planes or any(not 0 <= int(p) <= 12 for p in planes):
        raise InputError(f"ISL phase planes are 0..12, got {list(planes)}.")
    inputs = [Source(str(folder / f"phase_contrast_z{int(p):02d}.png")) for p in planes]
    tgts = [Source(str(folder / f"{t}_confocal_maxproj.png")) for t in targets]
    regions = split_regions(
        ISL_SIZE,
        ISL_SIZE,
        test_region=ISL_TEST_REGION,
        val_fraction=val_fraction,
        min_size=min_val_size,
    )
    field = Field("well_A4", inputs, tgts, split=None, regions=regions)
    return PairedDataset(
        [field],
        [f"phase_contrast_z{int(p):02d}" for p in planes],  # the file stems, as presets name them
        [f"{t}_confocal_maxproj" for t in targets],
        input_norm=Normalization("percentile"),
        target_norm=Normalization("percentile"),
        name="isl-condition-b",
    )


def mlcp_jurkat(
    data_dir: str | Path | None = None,
    *,
    inputs: Sequence[str] = ("brightfield", "darkfield"),
    val_fraction: float = 0.1,
    seed: int = 0,
) -> PairedDataset:
    """Jurkat imaging flow cytometry: brightfield + darkfield -> DNA, 7919 crops of 40x40.

    Held-out test: every cell whose index % 10 == 0; validation: a seeded `val_fraction` of the
    rest. Use ``patch_size=None`` (whole crops) or a patch of at most 40.

    Args:
        data_dir: folder holding ``mlcp-jurkat/jurkat_ifc.h5``; see `find_data`.
        inputs: input channels among ``("brightfield", "darkfield")``.
        val_fraction: fraction of non-test cells for validation.
        seed: validation split seed.
    """
    folder = find_data("mlcp-jurkat", data_dir)
    return PairedDataset.from_hdf5(
        folder / "jurkat_ifc.h5",
        list(inputs),
        ["dna"],
        val_fraction=val_fraction,
        test_every=JURKAT_TEST_EVERY,
        seed=seed,
        input_norm=Normalization("percentile"),
        target_norm=Normalization("percentile"),
        name="mlcp-jurkat",
    )


A549_TRAIN_STORE = "a549_hoechst_cellmask_train_val.zarr"
A549_TEST_STORE = "a549_hoechst_cellmask_test.zarr"
A549_ORIGIN = "https://public.czbiohub.org/comp.micro/viscy/VS_datasets/VSCyto2D/"


def a549_vscyto2d(
    path: str | Path,
    *,
    inputs: Sequence[str | int] = ("Phase3D",),
    targets: Sequence[str | int] = ("Nuclei", "Membrane"),
    test: bool = False,
    seed_split: bool = False,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> PairedDataset:
    """The VSCyto2D A549 plates (Hoechst nuclei + CellMask membrane from phase), REFERENCE.md s. 5.

    The stores live under ``{A549_ORIGIN}training/`` and ``test/`` (HCS OME-Zarr, positions
    ``0/0/<fov>``, arrays (1, C, 1, 2048, 2048); channel names may read "Nucl"/"Mem", matched
    loosely).

    Args:
        path: ``a549_hoechst_cellmask_train_val.zarr`` or ``..._test.zarr``.
        inputs: input channels.
        targets: target channels (the test store's label mask is simply not selected).
        test: put every field in the "test" split (for the test store).
        seed_split: the seed project's split: fields 1..29 train, the others validation.
        val_fraction: otherwise, a seeded fraction of fields for validation.
        seed: split seed.
    """
    positions = ome_zarr.plate_positions(path)
    splits = None
    if test:
        splits = dict.fromkeys(positions, "test")
    elif seed_split:
        splits = {p: ("train" if 1 <= int(p.split("/")[-1]) <= 29 else "val") for p in positions}
    return PairedDataset.from_zarr_plate(
        path,
        inputs,
        targets,
        splits=splits,
        val_fraction=val_fraction,
        seed=seed,
        input_norm=Normalization("median_iqr", per_field=True),
        target_norm=Normalization("percentile"),
        name="a549-vscyto2d",
    )


def _synthetic(data_dir=None, **args) -> PairedDataset:
    from vsgan.datasets.synthetic import synthetic_cells

    return synthetic_cells(**{"n_fields": 8, "size": 128, **args})


def _a549(data_dir=None, **args) -> PairedDataset:
    if data_dir is None:
        raise InputError("a549-vscyto2d needs --data: the VSCyto2D training .zarr store.")
    return a549_vscyto2d(data_dir, **args)


# The one dataset registry: name -> builder(data_dir, **args). Presets and recipes name a
# dataset and its arguments; evaluation and the demo rebuild it from there.
BUILDERS = {
    "isl-condition-b": isl_condition_b,
    "mlcp-jurkat": mlcp_jurkat,
    "a549-vscyto2d": _a549,
    "synthetic": _synthetic,
}


def build(name: str, data_dir: str | Path | None = None, **args) -> PairedDataset:
    """The `PairedDataset` of a registered dataset (or a PairedDataset JSON spec file).

    Args:
        name: a key of `BUILDERS` ("isl-condition-b", "mlcp-jurkat", "a549-vscyto2d",
            "synthetic") or the path of a spec written by `PairedDataset.save`.
        data_dir: where the data lives (default `$VSGAN_DATA`, the Keras cache).
        **args: the builder's keyword arguments (a preset's `dataset_args`).

    Example:
    >>> build("synthetic", n_fields=2, size=64).input_names
    ['phase']
    """
    if name in BUILDERS:
        try:
            return BUILDERS[name](data_dir, **args)
        except TypeError as error:
            raise InputError(f"dataset {name!r}: bad arguments {args} ({error}).") from None
    if Path(name).is_file():
        return PairedDataset.load(name)
    raise InputError(
        f"unknown dataset {name!r}: use one of {sorted(BUILDERS)} or a PairedDataset JSON spec."
    )
