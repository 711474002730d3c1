"""Where the real datasets live: local folders, their public origins and their sha256 checksums.

`find_data` looks in the given folder, then ``$VSGAN_DATA``, then the Keras cache
(``~/.keras/datasets``); `download` fetches files from their public origin and checks each sha256.
When neither works (no network), the error says exactly which files to fetch and where to put them.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from urllib.parse import quote

from vsgan.errors import ChecksumError, DataFileError
from vsgan.io.files import sha256

_ISL_BASE = (
    "https://raw.githubusercontent.com/google/in-silico-labeling/master/isl/testdata/"
    "condition_blue_sample/"
)
_ISL_PREFIX = (
    "lab-FINKBEINER,condition-KEVAN_0_8,acquisition_date,year-2015,month-10,day-5,minute-0,"
    "well-A4,tile_computation-STITCHED,"
)
_ISL_SHA256 = {
    "dapi_confocal_maxproj.png": "9c4a1871cc83ea3b5bbf5ca8586c901a03d16b1dbe64277f650dcbccbfa6407f",
    "map2_confocal_maxproj.png": "1629cbfbb456b98da4a67790023e595b6d03ad85f4c32b58bb95502fd0099e8f",
    "nfh_confocal_maxproj.png": "ba2a6874f53d3e8f0bf1be522bc240539166eaa1322c2038fa0c11868cb53eee",
    "phase_contrast_z00.png": "f9c8ff6ca50c75d2ae94e70333caefe05c94dddba5ff90216bca5b9498b8fc5a",
    "phase_contrast_z01.png": "174e164b76be37ff94278b8e64fbc2409191860c215ebde4639af9af5c99fed8",
    "phase_contrast_z02.png": "979aa686e08e2cde6e35ed80a0095d86cfcc18f087417e498330a5b5d9b0355e",
    "phase_contrast_z03.png": "19cdeb7fe097ca4f896813a3f8ba58e3c0bb03e8e2a1697ac0a0ae016dc67b17",
    "phase_contrast_z04.png": "3182ffaf508f7ee198e377083a1c90e9d8e8b14f6a5dab54aae7bbfbda32e74a",
    "phase_contrast_z05.png": "cc9f93e1485ad0d56a6a48a90df0c26bb59ed53a08c1f56ec966821f7f3d8fb4",
    "phase_contrast_z06.png": "1d3f266e72a9fc2deda8c0dd51dcd74bb2962c651c4c03eda50835bbe82c124e",
    "phase_contrast_z07.png": "3fdda2fc3befd480173be3e82a218b1bdbc319697cecabc5869a342018e09ca7",
    "phase_contrast_z08.png": "bca83fc5dd3d0c99c13af96c316b2705e71c096e9f9d26afff484d637c992fb9",
    "phase_contrast_z09.png": "3308e318dc806cfffbb276b0f159e518d6ac5fe01909a513be0103619b1652c2",
    "phase_contrast_z10.png": "fd3b9536edefe3031eb0055ad77840848e98dee229704573d7b75c1bc1ba4684",
    "phase_contrast_z11.png": "eeab39892a231bf52fabd9aecfccc14c8fd7adfa534cfe40dcfd400db0df7a80",
    "phase_contrast_z12.png": "787f35dcc662983b0bc66fd52cdc2f87b2f98f22d8aba5cec9aff2773702b5af",
}


def _isl_origin(local: str) -> str:
    if local.startswith("phase_contrast_z"):
        z = int(local[len("phase_contrast_z") : -len(".png")])
        remote = f"{_ISL_PREFIX}z_depth-{z},channel-PHASE_CONTRAST,is_mask-false.png"
    else:
        stain = local.split("_")[0].upper()
        remote = (
            f"{_ISL_PREFIX}depth_computation-MAXPROJECT,channel-{stain}_CONFOCAL,is_mask-false.png"
        )
    return _ISL_BASE + quote(remote, safe=",-_.")


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """A file of a dataset: its local name, public origin (None: no direct URL) and sha256."""

    name: str
    origin: str | None
    sha256: str


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A real dataset: folder name, files, and how to get them by hand."""

    name: str
    files: tuple[RemoteFile, ...]
    homepage: str
    manual: str = ""


DATASETS: dict[str, DataSource] = {
    "isl-condition-b": DataSource(
        "isl-condition-b",
        tuple(RemoteFile(n, _isl_origin(n), h) for n, h in _ISL_SHA256.items()),
        "https://github.com/google/in-silico-labeling (isl/testdata/condition_blue_sample/)",
    ),
    "mlcp-jurkat": DataSource(
        "mlcp-jurkat",
        (
            RemoteFile(
                "jurkat_ifc.h5",
                None,
                "dd14b018454f03420b3064301cb7a6b262da9542f14e7be848f2208e8deb9070",
            ),
        ),
        "https://github.com/minh-doan/MLCP (images/Experiment_1, images/Experiment_2)",
        manual=(
            "jurkat_ifc.h5 holds the brightfield (Ch3), darkfield (Ch6) and DNA (Ch4) 40x40 crops "
            "of the 30x30 montages in github.com/minh-doan/MLCP images/Experiment_1 and "
            "Experiment_2 (Blasi et al. 2016, BBBC048), de-duplicated, with datasets "
            "'brightfield', 'darkfield', 'dna' (N, 40, 40) uint16, 'cell_cycle_phase', "
            "'experiment'. Copy the vsgan project's shared copy of this file."
        ),
    ),
}

ALIASES = {n.replace("-", "_"): n for n in DATASETS}


def _canonical(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in DATASETS:
        raise DataFileError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}.")
    return name


def default_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """Folders searched for datasets, in order: `data_dir`, ``$VSGAN_DATA``, the Keras cache."""
    dirs = []
    if data_dir is not None:
        dirs.append(Path(data_dir))
    if os.environ.get("VSGAN_DATA"):
        dirs.append(Path(os.environ["VSGAN_DATA"]))
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    dirs.append(keras_home / "datasets")
    return dirs


def verify(name: str, folder: str | Path) -> None:
    """Checks every file of dataset `name` in `folder` against its recorded sha256."""
    source = DATASETS[_canonical(name)]
    for f in source.files:
        path = Path(folder) / f.name
        if not path.exists():
            raise DataFileError(f"{path}: missing. {instructions(name, folder)}")
        got = sha256(path)
        if got != f.sha256:
            raise ChecksumError(
                f"{path}: sha256 {got} does not match the recorded {f.sha256}. The file is "
                f"corrupt or a different version; fetch it again. {instructions(name, folder)}"
            )


def instructions(name: str, folder: str | Path | None = None) -> str:
    """What to download and where to put it, for dataset `name`."""
    source = DATASETS[_canonical(name)]
    dest = Path(folder) if folder else default_dirs()[-1] / source.name
    lines = [
        f"Put the files of {source.name!r} in {dest} (or set $VSGAN_DATA to a folder "
        f"holding {source.name}/). From {source.homepage}:"
    ]
    for f in source.files:
        where = f.origin or "(no direct URL, see below)"
        lines.append(f"  {where}\n    -> {dest / f.name}  (sha256 {f.sha256})")
    if source.manual:
        lines.append(source.manual)
    return "\n".join(lines)


def _complete(folder: Path, source: DataSource) -> bool:
    return all((folder / f.name).is_file() for f in source.files)


def find_data(name: str, data_dir: str | Path | None = None, *, download: bool = False) -> Path:
    """The local folder holding dataset `name`.

    Looks in `data_dir` (the folder itself or its sub-folder `name`), ``$VSGAN_DATA/name`` and
    ``~/.keras/datasets/name``; with `download=True`, fetches missing files from their origin.

    Args:
        name: ``"isl-condition-b"`` or ``"mlcp-jurkat"`` (underscores work too).
        data_dir: a folder to look in first.
        download: fetch from the public origin (sha256-checked) when not found locally.

    Returns:
        The dataset's folder.

    Example (with the data in `$VSGAN_DATA`, as CI lays it out):
    >>> find_data("isl-condition-b").name
    'isl-condition-b'

    """
    name = _canonical(name)
    source = DATASETS[name]
    for d in default_dirs(data_dir):
        for folder in (d / name, d):
            if _complete(folder, source):
                return folder
    if download:
        return fetch(name, default_dirs(data_dir)[0])
    raise DataFileError(
        f"dataset {name!r} not found in {[str(d) for d in default_dirs(data_dir)]}.\n"
        + instructions(name, default_dirs(data_dir)[0] / name)
    )


def fetch(name: str, root: str | Path) -> Path:
    """Downloads dataset `name` into ``root/name`` from its origin, checking every sha256."""
    import keras

    name = _canonical(name)
    source = DATASETS[name]
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)  # get_file falls back to /tmp otherwise
    for f in source.files:
        if (folder / f.name).is_file() and sha256(folder / f.name) == f.sha256:
            continue
        if f.origin is None:
            raise DataFileError(
                f"{f.name} of {name!r} has no direct download URL.\n" + instructions(name, folder)
            )
        target = folder / f.name
        try:
            keras.utils.get_file(
                fname=f.name,
                origin=f.origin,
                file_hash=f.sha256,
                cache_dir=str(Path(root)),
                cache_subdir=name,
            )
        except Exception as e:  # no network, HTTP errors, hash mismatch
            if target.is_file() and sha256(target) != f.sha256:
                target.unlink()
                raise ChecksumError(
                    f"{f.origin}: the download does not match its recorded sha256 "
                    f"{f.sha256}; it was deleted ({target}). Fix: try again later, or fetch "
                    "it by hand.\n" + instructions(name, folder)
                ) from None
            raise DataFileError(
                f"could not download {f.origin} ({type(e).__name__}: {e}).\n"
                + instructions(name, folder)
            ) from e
        got = sha256(target) if target.is_file() else None
        if got != f.sha256:  # whatever the download function did, never keep a bad file
            target.unlink(missing_ok=True)
            raise ChecksumError(
                f"{f.origin}: the download has sha256 {got}, not the recorded {f.sha256}; it "
                f"was deleted ({target}). Fix: try again later, or fetch it by hand.\n"
                + instructions(name, folder)
            )
    verify(name, folder)
    return folder
