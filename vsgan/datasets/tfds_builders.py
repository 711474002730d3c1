"""TFDS builders (`tfds.core.GeneratorBasedBuilder`) of the real datasets, stored as raw uint16 /
float32 pixels with their splits.

Each reads a local folder: ``manual_dir`` (``tfds.download.DownloadConfig(manual_dir=...)``), else
``$VSGAN_DATA`` / ``~/.keras/datasets`` (see `vsgan.datasets.find_data`), else downloads from the
public origin with sha256 checks where the origin serves the files directly. Offline, the error says
exactly what to fetch and where to put it.

Example (the data folder in `$VSGAN_DATA`):
>>> import os, tempfile
>>> import tensorflow_datasets as tfds
>>> b = IslConditionB(data_dir=tempfile.mkdtemp())
>>> config = tfds.download.DownloadConfig(manual_dir=os.environ["VSGAN_DATA"])
>>> b.download_and_prepare(download_config=config)  # doctest: +ELLIPSIS
Downloading and preparing dataset ...
Dataset isl_condition_b downloaded and prepared to ...
>>> sorted(b.info.splits)
['test', 'train']
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from vsgan.datasets import real, sources
from vsgan.errors import DataFileError
from vsgan.io import readers


def _manual_dir(dl_manager) -> Path | None:
    try:
        d = dl_manager.manual_dir
    except (AssertionError, AttributeError, ValueError):  # tfds asserts when none was given
        return None
    return Path(d) if d and Path(d).exists() else None


def _locate(name: str, dl_manager) -> Path:
    manual = _manual_dir(dl_manager)
    try:
        return sources.find_data(name, manual)
    except DataFileError:
        pass
    # Not local: fetch into tfds' download folder (checked against the recorded sha256).
    return sources.fetch(name, Path(dl_manager.download_dir))


def _quadrants(size: int) -> dict[str, tuple[int, int, int, int]]:
    h = size // 2
    return {
        "top_left": (0, h, 0, h),
        "top_right": (0, h, h, size),
        "bottom_left": (h, size, 0, h),
        "bottom_right": (h, size, h, size),
    }


class IslConditionB(tfds.core.GeneratorBasedBuilder):
    """In Silico Labeling condition B: 13-plane phase z-stack -> DAPI, MAP2, NFH (uint16).

    Splits: "train" = the top-left, top-right and bottom-left quadrants (512x512 each);
    "test" = the bottom-right quadrant (rows 512-1023, columns 512-1023), held out.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Quadrant split of the stitched condition B field."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = sources.instructions("isl-condition-b", "<manual_dir>")

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="Phase z-stack -> DAPI / MAP2 / NFH of rat cortical neurons (ISL, 2018).",
            features=tfds.features.FeaturesDict(
                {
                    "input": tfds.features.Tensor(
                        shape=(None, None, 13), dtype=np.uint16, encoding="zlib"
                    ),
                    "target": tfds.features.Tensor(
                        shape=(None, None, 3), dtype=np.uint16, encoding="zlib"
                    ),
                    "region": tfds.features.Text(),
                }
            ),
            supervised_keys=("input", "target"),
            homepage="https://github.com/google/in-silico-labeling",
        )

    def _split_generators(self, dl_manager):
        folder = _locate("isl-condition-b", dl_manager)
        return {
            "train": self._generate_examples(folder, "train"),
            "test": self._generate_examples(folder, "test"),
        }

    def _generate_examples(self, folder: Path, split: str):
        x = np.concatenate(
            [readers.read_image(folder / f"phase_contrast_z{z:02d}.png") for z in range(13)], -1
        )
        y = np.concatenate(
            [readers.read_image(folder / f"{t}_confocal_maxproj.png") for t in real.ISL_TARGETS],
            -1,
        )
        for region, (y0, y1, x0, x1) in _quadrants(x.shape[0]).items():
            is_test = (y0, y1, x0, x1) == (
                x.shape[0] // 2,
                x.shape[0],
                x.shape[1] // 2,
                x.shape[1],
            )
            if is_test == (split == "test"):
                yield (
                    region,
                    {
                        "input": x[y0:y1, x0:x1].astype(np.uint16),
                        "target": y[y0:y1, x0:x1].astype(np.uint16),
                        "region": region,
                    },
                )


class MlcpJurkat(tfds.core.GeneratorBasedBuilder):
    """Jurkat imaging flow cytometry: brightfield + darkfield -> DNA, 40x40 uint16 crops.

    Splits: "test" = cells whose index % 10 == 0; "train" = the others.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "index % 10 == 0 held out."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = sources.instructions("mlcp-jurkat", "<manual_dir>")

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="Jurkat cells, imaging flow cytometry (Blasi et al. 2016, BBBC048).",
            features=tfds.features.FeaturesDict(
                {
                    "input": tfds.features.Tensor(shape=(40, 40, 2), dtype=np.uint16),
                    "target": tfds.features.Tensor(shape=(40, 40, 1), dtype=np.uint16),
                    "cell_cycle_phase": tfds.features.Text(),
                    "index": np.int64,
                }
            ),
            supervised_keys=("input", "target"),
            homepage="https://github.com/minh-doan/MLCP",
        )

    def _split_generators(self, dl_manager):
        folder = _locate("mlcp-jurkat", dl_manager)
        return {
            "train": self._generate_examples(folder / "jurkat_ifc.h5", "train"),
            "test": self._generate_examples(folder / "jurkat_ifc.h5", "test"),
        }

    def _generate_examples(self, path: Path, split: str):
        bf = readers.read_hdf5(path, "brightfield")
        df = readers.read_hdf5(path, "darkfield")
        dna = readers.read_hdf5(path, "dna")
        phase = readers.read_hdf5(path, "cell_cycle_phase")
        for i in range(bf.shape[0]):
            if (i % real.JURKAT_TEST_EVERY == 0) == (split == "test"):
                yield (
                    i,
                    {
                        "input": np.stack([bf[i], df[i]], -1),
                        "target": dna[i][..., None],
                        "cell_cycle_phase": phase[i].decode(),
                        "index": i,
                    },
                )


class A549Vscyto2d(tfds.core.GeneratorBasedBuilder):
    """VSCyto2D A549 plates: phase -> Hoechst nuclei + CellMask membrane, float32 fields.

    Reads ``a549_hoechst_cellmask_train_val.zarr`` (and ``a549_hoechst_cellmask_test.zarr`` if
    present) from ``manual_dir``. Splits: "train" = fields 1..29 (the seed project's choice),
    "validation" = the other train_val fields, "test" = the test store.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Seed split: fields 1..29 train."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Download {real.A549_TRAIN_STORE} (from {real.A549_ORIGIN}training/) and optionally "
        f"{real.A549_TEST_STORE} (from {real.A549_ORIGIN}test/) into manual_dir."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="A549 cells, phase -> nuclei + membrane (VisCy VSCyto2D).",
            features=tfds.features.FeaturesDict(
                {
                    "input": tfds.features.Tensor(
                        shape=(None, None, 1), dtype=np.float32, encoding="zlib"
                    ),
                    "target": tfds.features.Tensor(
                        shape=(None, None, 2), dtype=np.float32, encoding="zlib"
                    ),
                    "position": tfds.features.Text(),
                }
            ),
            supervised_keys=("input", "target"),
            homepage="https://github.com/mehta-lab/VisCy",
        )

    def _split_generators(self, dl_manager):
        manual = _manual_dir(dl_manager)
        if manual is None or not (manual / real.A549_TRAIN_STORE).exists():
            raise DataFileError(
                f"{real.A549_TRAIN_STORE} not found in manual_dir={manual}. "
                + self.MANUAL_DOWNLOAD_INSTRUCTIONS
            )
        splits = {
            "train": self._generate_examples(manual / real.A549_TRAIN_STORE, "train"),
            "validation": self._generate_examples(manual / real.A549_TRAIN_STORE, "val"),
        }
        if (manual / real.A549_TEST_STORE).exists():
            splits["test"] = self._generate_examples(manual / real.A549_TEST_STORE, "test")
        return splits

    def _generate_examples(self, path: Path, split: str):
        spec = real.a549_vscyto2d(path, test=split == "test", seed_split=True)
        for field in spec.fields_in(split):
            x, y = field.read()
            yield (
                field.name,
                {
                    "input": x.astype(np.float32),
                    "target": y.astype(np.float32),
                    "position": field.name,
                },
            )


__all__ = ["A549Vscyto2d", "IslConditionB", "MlcpJurkat"]
