"""`PairedDataset`: which images pair up, their channel names, the split and the normalisation.

A spec is plain data: a list of fields, each with input sources (e.g. several focal planes) and
target sources (e.g. nuclei + membrane), where each field goes (train / val / test, whole or by
region), and the two `Normalization`s. It saves to JSON next to a model and is easy to write by
hand::

    {"fields": [{"name": "well_A4",
                 "inputs": [{"path": "phase_z00.png"}, {"path": "phase_z01.png"}],
                 "targets": [{"path": "dapi.png"}],
                 "regions": {"train": [[0, 512, 0, 1024]], "val": [...], "test": [...]}}],
     "input_names": ["phase_z00", "phase_z01"], "target_names": ["dapi"],
     "input_norm": {"method": "percentile", ...}, "target_norm": {...}}
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vsgan.data.normalize import Normalization, default_input
from vsgan.data.splits import SPLITS, Rect, split_fields
from vsgan.errors import DataFileError, InputError
from vsgan.io import ome_zarr, readers
from vsgan.io.channels import match_channels, natural_sorted


@dataclasses.dataclass
class Source:
    """One image of a field: a file (or in-memory array) and the channels taken from it.

    Args:
        path: file path, ``file.h5::dataset`` or ``plate.zarr::row/col/fov``; None for `array`.
        channels: channel indices or names (None: all).
        index: item along the first axis of an HDF5 / .npy stack.
        array: an in-memory (H, W[, C]) array instead of a file (not saved to JSON).
    """

    path: str | None = None
    channels: list[int | str] | None = None
    index: int | None = None
    array: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)

    def read(self) -> np.ndarray:
        """The (H, W, C) image in its stored dtype."""
        src = self.array if self.array is not None else self.path
        return readers.read_image(src, self.channels, index=self.index)

    def get_config(self) -> dict[str, Any]:
        if self.path is None:
            raise InputError(
                "an in-memory field cannot be saved to JSON; write its arrays to .npy or TIFF and "
                "build the spec from files."
            )
        cfg: dict[str, Any] = {"path": self.path}
        if self.channels is not None:
            cfg["channels"] = list(self.channels)
        if self.index is not None:
            cfg["index"] = int(self.index)
        return cfg

    @classmethod
    def from_config(cls, config: dict | str) -> Source:
        return cls(path=config) if isinstance(config, str) else cls(**config)


@dataclasses.dataclass
class Field:
    """One field of view: input and target sources of the same size.

    Args:
        name: a unique name.
        inputs: sources concatenated on channels into the model input.
        targets: sources concatenated into the target.
        split: the split of the whole field ("train", "val", "test"); None when `regions` is used.
        regions: ``{split: [(y0, y1, x0, x1), ...]}`` for a field split spatially.
    """

    name: str
    inputs: list[Source]
    targets: list[Source]
    split: str | None = "train"
    regions: dict[str, list[Rect]] | None = None

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """Reads ``(input, target)`` as (H, W, Cin) and (H, W, Cout) arrays (stored dtype)."""
        x = _concat([s.read() for s in self.inputs], self.name, self.inputs)
        y = _concat([s.read() for s in self.targets], self.name, self.targets)
        if x.shape[:2] != y.shape[:2]:
            raise InputError(
                f"field {self.name!r}: input {x.shape[:2]} ({_where(self.inputs)}) and target "
                f"{y.shape[:2]} ({_where(self.targets)}) differ in size. Fix: register/crop them "
                "to the same field of view."
            )
        return x, y

    def rects(self, split: str, shape: tuple[int, int] | None = None) -> list[Rect]:
        """The rectangles of this field in `split` (the whole field if it belongs to it)."""
        if self.regions is not None:
            return [tuple(r) for r in self.regions.get(split, [])]
        if self.split == split:
            if shape is None:
                raise InputError("shape is needed for a whole-field rectangle.")
            return [(0, shape[0], 0, shape[1])]
        return []

    def in_split(self, split: str) -> bool:
        return bool(self.regions.get(split)) if self.regions is not None else self.split == split

    def get_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "name": self.name,
            "inputs": [s.get_config() for s in self.inputs],
            "targets": [s.get_config() for s in self.targets],
            "split": self.split,
        }
        if self.regions is not None:
            cfg["regions"] = {k: [list(map(int, r)) for r in v] for k, v in self.regions.items()}
        return cfg

    @classmethod
    def from_config(cls, config: dict) -> Field:
        regions = config.get("regions")
        return cls(
            name=config["name"],
            inputs=[Source.from_config(s) for s in config["inputs"]],
            targets=[Source.from_config(s) for s in config["targets"]],
            split=config.get("split", "train"),
            regions={k: [tuple(r) for r in v] for k, v in regions.items()} if regions else None,
        )


def _where(sources: Sequence[Source]) -> str:
    return ", ".join(s.path or "array" for s in sources)


def _concat(parts: list[np.ndarray], name: str, sources: Sequence[Source]) -> np.ndarray:
    shapes = {p.shape[:2] for p in parts}
    if len(shapes) > 1:
        raise InputError(
            f"field {name!r}: its images differ in size {sorted(shapes)} ({_where(sources)}). "
            "Fix: every input and target of a field must cover the same pixels."
        )
    if len(parts) == 1:
        return parts[0]
    dtype = np.result_type(*parts)
    return np.concatenate([p.astype(dtype, copy=False) for p in parts], axis=-1)


class PairedDataset:
    """A paired label-free -> fluorescence dataset: fields, channel names, split, normalisation.

    Args:
        fields: the `Field`s.
        input_names: one name per input channel.
        target_names: one name per target channel.
        input_norm: normalisation of the inputs (default: per-field percentile).
        target_norm: normalisation of the targets (default: dataset percentile, fit on train).
        name: a short name for logs.

    Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ds = PairedDataset.from_arrays(rng.random((4, 64, 64, 1)), rng.random((4, 64, 64, 1)),
    ...                                val_fraction=0.25)
    >>> ds.num_fields("train"), ds.num_fields("val")
    (3, 1)
    """

    def __init__(
        self,
        fields: Sequence[Field],
        input_names: Sequence[str],
        target_names: Sequence[str],
        *,
        input_norm: Normalization | None = None,
        target_norm: Normalization | None = None,
        name: str = "paired",
    ):
        if not fields:
            raise InputError("a PairedDataset needs at least one field.")
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise InputError("field names must be unique.")
        for f in fields:
            if f.split is not None and f.split not in SPLITS:
                raise InputError(f"field {f.name!r}: split {f.split!r} is not one of {SPLITS}.")
        self.fields = list(fields)
        self.input_names = list(input_names)
        self.target_names = list(target_names)
        self.input_norm = input_norm or default_input()
        self.target_norm = target_norm or Normalization("percentile")
        self.name = name

    # -- queries ----------------------------------------------------------------------------------

    @property
    def in_channels(self) -> int:
        return len(self.input_names)

    @property
    def out_channels(self) -> int:
        return len(self.target_names)

    def fields_in(self, split: str) -> list[Field]:
        """The fields with any pixels in `split`."""
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}; use one of {SPLITS}.")
        return [f for f in self.fields if f.in_split(split)]

    def num_fields(self, split: str) -> int:
        return len(self.fields_in(split))

    def __len__(self) -> int:
        return len(self.fields)

    def __repr__(self) -> str:
        counts = {s: self.num_fields(s) for s in SPLITS}
        return (
            f"PairedDataset({self.name!r}, {self.input_names} -> {self.target_names}, "
            f"fields={counts})"
        )

    # -- normalisation ----------------------------------------------------------------------------

    def fit_normalization(self, max_fields: int = 64) -> PairedDataset:
        """Fits the dataset-level normalisations on the training pixels only.

        Args:
            max_fields: fit on at most this many training fields (evenly spaced).

        Returns:
            self.
        """
        train = self.fields_in("train")
        if not train:
            raise InputError(f"{self.name}: no training fields to fit the normalisation on.")
        step = max(1, len(train) // max_fields)
        xs, ys = [], []
        for f in train[::step]:
            x, y = f.read()
            for y0, y1, x0, x1 in f.rects("train", x.shape[:2]):
                xs.append(x[y0:y1, x0:x1])
                ys.append(y[y0:y1, x0:x1])
        if not self.input_norm.per_field:
            self.input_norm.fit(xs)
        self.target_norm.fit(ys)
        return self

    # -- serialisation ----------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """A JSON-able description (fails for in-memory fields)."""
        return {
            "name": self.name,
            "input_names": self.input_names,
            "target_names": self.target_names,
            "input_norm": self.input_norm.get_config(),
            "target_norm": self.target_norm.get_config(),
            "fields": [f.get_config() for f in self.fields],
        }

    @classmethod
    def from_config(cls, config: dict) -> PairedDataset:
        return cls(
            [Field.from_config(f) for f in config["fields"]],
            config["input_names"],
            config["target_names"],
            input_norm=Normalization.from_config(config["input_norm"]),
            target_norm=Normalization.from_config(config["target_norm"]),
            name=config.get("name", "paired"),
        )

    def save(self, path: str | Path) -> None:
        """Writes the spec as JSON (e.g. ``model_dir/dataset.json``)."""
        Path(path).write_text(json.dumps(self.get_config(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> PairedDataset:
        """Reads a spec written by `save` (or by hand)."""
        try:
            return cls.from_config(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataFileError(f"{path}: not a readable PairedDataset JSON ({e}).") from e

    # -- constructors -----------------------------------------------------------------------------

    @classmethod
    def from_arrays(
        cls,
        inputs: Sequence[np.ndarray] | np.ndarray,
        targets: Sequence[np.ndarray] | np.ndarray,
        *,
        input_names: Sequence[str] | None = None,
        target_names: Sequence[str] | None = None,
        val_fraction: float = 0.2,
        seed: int = 0,
        **kwargs,
    ) -> PairedDataset:
        """Fields from in-memory arrays: lists (or stacks) of (H, W[, C]) images, split by field."""
        if len(inputs) != len(targets):
            raise InputError(f"{len(inputs)} inputs but {len(targets)} targets; pair them 1:1.")
        names = [f"field{i:04d}" for i in range(len(inputs))]
        splits = split_fields(names, val_fraction=val_fraction, seed=seed)
        fields = [
            Field(n, [Source(array=np.asarray(x))], [Source(array=np.asarray(y))], splits[n])
            for n, x, y in zip(names, inputs, targets)
        ]
        cin = readers._as_hwc(np.asarray(inputs[0]), "input").shape[-1]
        cout = readers._as_hwc(np.asarray(targets[0]), "target").shape[-1]
        return cls(
            fields,
            input_names or [f"input{i}" for i in range(cin)],
            target_names or [f"target{i}" for i in range(cout)],
            **kwargs,
        )

    @classmethod
    def from_folder(
        cls,
        root: str | Path,
        inputs: Sequence[str],
        targets: Sequence[str],
        *,
        val_fraction: float = 0.2,
        test_fields: Sequence[str] = (),
        seed: int = 0,
        **kwargs,
    ) -> PairedDataset:
        """Fields from image files matched by name.

        Each pattern is a glob; several matches become several channels in natural order (``z2``
        before ``z10``, e.g. focal planes); every field's channels are matched to the first
        field's by name.
        Layouts: (a) `root` itself is one field, (b) every sub-folder of `root` holding all the
        patterns is a field, (c) a flat folder where ``{field}`` in the patterns marks the part of
        the file name naming the field, e.g. ``inputs=["{field}_phase.tif"]``,
        ``targets=["{field}_dapi.tif"]``. Fields are split by field (`val_fraction`).

        Args:
            root: the folder.
            inputs: patterns of the input files.
            targets: patterns of the target files.
            val_fraction: fraction of non-test fields for validation.
            test_fields: names of fields held out for testing.
            seed: split seed.
            **kwargs: `PairedDataset` arguments (normalisations, name).

        Returns:
            The spec. Channel names are the matched file stems.
        """
        root = Path(root)
        if not root.is_dir():
            raise DataFileError(f"{root}: no such folder.")
        patterns = list(inputs) + list(targets)
        if any("{field}" in p for p in patterns):
            if not all("{field}" in p for p in patterns):
                raise InputError("use {field} in every pattern, or in none.")
            found = _match_flat(root, patterns)
        else:
            dirs = [root] + natural_sorted(d for d in root.iterdir() if d.is_dir())
            found = {}
            for d in dirs:
                matches = [natural_sorted(d.glob(p)) for p in patterns]
                if all(matches):
                    found[d.name if d != root else root.name] = matches
        if not found:
            raise DataFileError(
                f"{root}: no field holds files matching every pattern {patterns}. Files there: "
                f"{sorted(p.name for p in root.iterdir())[:20]}."
            )
        n_in = len(inputs)
        fields, input_names, target_names = [], None, None
        for name, matches in found.items():
            ins = [Source(str(p)) for m in matches[:n_in] for p in m]
            tgs = [Source(str(p)) for m in matches[n_in:] for p in m]
            if input_names is None:
                input_names = _stems(matches[:n_in], name)
                target_names = _stems(matches[n_in:], name)
            else:  # by name, never by position: the same channels in every field
                where = f"{root}: field {name!r}"
                stems = _stems(matches[:n_in], name)
                ins = [ins[i] for i in match_channels(input_names, stems, exact=True, where=where)]
                stems = _stems(matches[n_in:], name)
                tgs = [tgs[i] for i in match_channels(target_names, stems, exact=True, where=where)]
            fields.append(Field(name, ins, tgs))
        splits = split_fields(list(found), val_fraction=val_fraction, test=test_fields, seed=seed)
        for f in fields:
            f.split = splits[f.name]
        # A file may hold several channels: name them from the first field's images.
        first_x, first_y = fields[0].read()
        if first_x.shape[-1] != len(input_names):
            input_names = [f"input{i}" for i in range(first_x.shape[-1])]
        if first_y.shape[-1] != len(target_names):
            target_names = [f"target{i}" for i in range(first_y.shape[-1])]
        kwargs.setdefault("name", root.name)
        return cls(fields, input_names, target_names, **kwargs)

    @classmethod
    def from_channel_names(
        cls,
        root: str | Path,
        input_names: Sequence[str],
        target_names: Sequence[str],
        *,
        split: str = "test",
        **kwargs,
    ) -> PairedDataset:
        """Fields whose files are named after given channels (a model's), all in one split.

        `root` is one field, or each of its sub-folders holding images is; in each, one file per
        channel is found by name (`vsgan.io.channels.match_channels`: ``phase_z3.tif`` for
        ``phase_z03``); other files are left out.

        Args:
            root: the folder.
            input_names: input channel names (e.g. `model.input_channels`).
            target_names: target channel names (e.g. `model.output_channels`).
            split: the split every field goes to ("test": held-out evaluation).
            **kwargs: `PairedDataset` arguments.
        """
        root = Path(root)
        if not root.is_dir():
            raise DataFileError(f"{root}: no such folder.")
        suffixes = (".tif", ".tiff", ".png", ".npy")

        def images(d: Path) -> list[Path]:
            return natural_sorted(p for p in d.iterdir() if p.suffix.lower() in suffixes)

        dirs = (
            [root]
            if images(root)
            else [d for d in natural_sorted(root.iterdir()) if d.is_dir() and images(d)]
        )
        if not dirs:
            raise DataFileError(f"{root}: no images (TIFF, PNG, NPY) in it or its sub-folders.")
        fields = []
        for d in dirs:
            files = images(d)
            where = f"{d} (inputs)"
            ins = [files[i] for i in match_channels(input_names, files, where=where)]
            where = f"{d} (targets)"
            tgs = [files[i] for i in match_channels(target_names, files, where=where)]
            fields.append(
                Field(d.name, [Source(str(p)) for p in ins], [Source(str(p)) for p in tgs], split)
            )
        kwargs.setdefault("name", root.name)
        return cls(fields, list(input_names), list(target_names), **kwargs)

    @classmethod
    def from_hdf5(
        cls,
        path: str | Path,
        inputs: Sequence[str],
        targets: Sequence[str],
        *,
        val_fraction: float = 0.1,
        test_every: int | None = None,
        seed: int = 0,
        **kwargs,
    ) -> PairedDataset:
        """Fields from HDF5 datasets: one field per item of (N, H, W[, C]) stacks, or one field.

        Args:
            path: the HDF5 file.
            inputs: dataset names concatenated into the input (``["brightfield", "darkfield"]``).
            targets: dataset names of the targets (e.g. ``["dna"]``).
            val_fraction: fraction of non-test items for validation (random, seeded).
            test_every: hold out items whose index % test_every == 0 (mlcp-jurkat: 10).
            seed: split seed.
            **kwargs: `PairedDataset` arguments.
        """
        import h5py

        path = Path(path)
        try:
            with h5py.File(path, "r") as f:
                shapes = {}
                for d in list(inputs) + list(targets):
                    if d not in f:
                        raise InputError(
                            f"{path}: no dataset {d!r}. Known datasets: {sorted(f.keys())}."
                        )
                    shapes[d] = f[d].shape
        except OSError as e:
            raise DataFileError(f"{path}: cannot open as HDF5 ({e}).") from e
        # (H, W): one field; (N, H, W) or (N, H, W, C): a stack of N fields.
        ndims = {len(s) for s in shapes.values()}
        if ndims == {2}:
            n = None
        elif ndims <= {3, 4}:
            counts = {s[0] for s in shapes.values()}
            if len(counts) > 1:
                raise InputError(
                    f"{path}: the datasets hold different numbers of items {shapes}; pair them 1:1."
                )
            n = counts.pop()
        else:
            raise InputError(
                f"{path}: expected (H, W) images or (N, H, W[, C]) stacks, got shapes {shapes}."
            )
        spatial = {s[1:3] if n is not None else s[:2] for s in shapes.values()}
        if len(spatial) > 1:
            raise InputError(f"{path}: input and target sizes differ: {shapes}.")
        if n is None:
            fields = [
                Field(
                    path.stem,
                    [Source(f"{path}::{d}") for d in inputs],
                    [Source(f"{path}::{d}") for d in targets],
                    "train",
                )
            ]
        else:
            names = [f"{i:06d}" for i in range(n)]
            test = [nm for i, nm in enumerate(names) if test_every and i % test_every == 0]
            splits = split_fields(names, val_fraction=val_fraction, test=test, seed=seed)
            fields = [
                Field(
                    nm,
                    [Source(f"{path}::{d}", index=i) for d in inputs],
                    [Source(f"{path}::{d}", index=i) for d in targets],
                    splits[nm],
                )
                for i, nm in enumerate(names)
            ]

        def names_of(ds):
            out = []
            for d in ds:
                c = shapes[d][-1] if len(shapes[d]) == (4 if n is not None else 3) else 1
                out += [d] if c == 1 else [f"{d}{k}" for k in range(c)]
            return out

        kwargs.setdefault("name", path.stem)
        return cls(fields, names_of(inputs), names_of(targets), **kwargs)

    @classmethod
    def from_zarr_plate(
        cls,
        path: str | Path,
        inputs: Sequence[str | int] = ("Phase3D",),
        targets: Sequence[str | int] = ("Nuclei", "Membrane"),
        *,
        positions: Sequence[str] | None = None,
        val_fraction: float = 0.2,
        test_positions: Sequence[str] = (),
        splits: dict[str, str] | None = None,
        seed: int = 0,
        **kwargs,
    ) -> PairedDataset:
        """Fields from an HCS OME-Zarr plate (e.g. VSCyto2D's A549 stores, positions ``0/0/<fov>``).

        Channels are picked by OMERO label, matched loosely ("Nuclei" finds "Nucl").

        Args:
            path: the plate folder (``*.zarr``).
            inputs: input channel names or indices.
            targets: target channel names or indices.
            positions: the fields to use (default: all of the plate).
            val_fraction: fraction of non-test fields for validation, split by field.
            test_positions: fields held out for testing.
            splits: an explicit ``{position: split}`` mapping instead (e.g. the seed's fields 1..29
                for training).
            seed: split seed.
            **kwargs: `PairedDataset` arguments.
        """
        path = Path(path)
        all_positions = ome_zarr.plate_positions(path)
        positions = list(positions) if positions is not None else all_positions
        missing = sorted(set(positions) - set(all_positions))
        if missing:
            raise InputError(f"{path}: positions {missing} not in the plate ({all_positions}).")
        if not positions:
            raise DataFileError(f"{path}: the plate holds no fields.")
        names = ome_zarr.field_channel_names(path, positions[0]) or []
        _, names_all = ome_zarr.read_field(path, positions[0]) if not names else (None, names)
        where = f"{path}::{positions[0]}"
        in_idx = readers.resolve_channels(names_all, list(inputs), len(names_all), where)
        tg_idx = readers.resolve_channels(names_all, list(targets), len(names_all), where)
        if splits is None:
            splits = split_fields(
                positions, val_fraction=val_fraction, test=test_positions, seed=seed
            )
        fields = [
            Field(
                p,
                [Source(f"{path}::{p}", channels=in_idx)],
                [Source(f"{path}::{p}", channels=tg_idx)],
                splits.get(p, "train"),
            )
            for p in positions
        ]
        kwargs.setdefault("name", path.stem)
        return cls(fields, [names_all[i] for i in in_idx], [names_all[i] for i in tg_idx], **kwargs)


def _match_flat(root: Path, patterns: list[str]) -> dict[str, list[list[Path]]]:
    files = sorted(p.name for p in root.iterdir() if p.is_file())
    found: dict[str, list[list[Path]]] = {}
    regexes = [
        re.compile(fnmatch.translate(p.replace("{field}", "\0")).replace("\0", "(?P<field>.+?)"))
        for p in patterns
    ]
    keys = sorted({m.group("field") for f in files if (m := regexes[0].match(f))})
    for key in keys:
        per = [natural_sorted(root.glob(p.replace("{field}", glob.escape(key)))) for p in patterns]
        if all(per):
            found[key] = per
    return found


def _stems(matches: list[list[Path]], field: str) -> list[str]:
    """Channel names: file stems without the field's name where it is a separate word."""
    word = re.compile(rf"(^|[_\-. ]){re.escape(field)}($|[_\-. ])")
    return [word.sub(r"\1", p.stem).strip("_-. ") or p.stem for m in matches for p in m]
