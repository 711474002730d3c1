"""The model zoo: one preset table, `list_pretrained()`, `load_pretrained(name_or_path)`.

A preset is one record, `weights/<name>.json` (installed as the package `vsgan.weights`):
the recipe it was trained with, the dataset name and arguments that rebuild its data, its
channel names, architecture and normalisation (`config`), the weights file and its sha256,
held-out metrics and the model card (`<name>.md`). Presets are data (keras-hub style): adding
one is adding a record, nothing in the code names them. `source` says where weights come from:
"bundled" (`<name>.weights.h5` beside the record) or "pix2pixhd-archive" (the seed's PyTorch
checkpoints, converted on first use by `vsgan.zoo.a549`).

Nothing here imports TensorFlow until a model is loaded, so `vsgan models` is instant.
"""

from __future__ import annotations

import dataclasses
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from vsgan.errors import ChecksumError, InputError, ModelFileError, UnknownPresetError
from vsgan.io.files import atomic_path, sha256

SOURCES = ("bundled", "pix2pixhd-archive")
L1_SUFFIX = "-l1"


@dataclasses.dataclass(frozen=True)
class Preset:
    """One row of the preset table (see the module docstring)."""

    name: str
    description: str
    source: str
    dataset: str
    dataset_args: dict[str, Any]
    recipe: dict[str, Any]
    input_channels: list[str]
    output_channels: list[str]
    weights: str | None = None
    sha256: str | None = None
    card: str | None = None
    config: dict[str, Any] | None = None
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_record(cls, record: dict[str, Any], where: str) -> Preset:
        fields = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        missing = {"name", "description", "source", "dataset", "recipe"} - set(record)
        if missing or record.get("source") not in SOURCES:
            raise ModelFileError(
                f"{where}: not a preset record (missing {sorted(missing)} or source not in "
                f"{SOURCES}). Fix: write it with vsgan.zoo.save_preset."
            )
        known = {k: v for k, v in record.items() if k in fields}
        known.setdefault("dataset_args", record["recipe"].get("dataset_args", {}))
        known.setdefault("input_channels", [])
        known.setdefault("output_channels", [])
        return cls(**known, extra={k: v for k, v in record.items() if k not in fields})

    def as_dict(self) -> dict[str, Any]:
        """The record as `list_pretrained()` shows it."""
        out = dataclasses.asdict(self)
        return {**out.pop("extra"), **out}


def weights_dir() -> Path:
    """The folder of preset records and bundled weights (wheel and editable installs alike)."""
    return Path(str(resources.files("vsgan.weights")))


def _table() -> dict[str, Preset]:
    table = {}
    for path in sorted(weights_dir().glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ModelFileError(f"{path}: unreadable preset record ({error}).") from None
        preset = Preset.from_record(record, str(path))
        table[preset.name] = preset
    return table


def list_pretrained() -> dict[str, dict[str, Any]]:
    """Every preset: name -> its record (description, channels, held-out metrics, source).

    Example:
    >>> sorted(list_pretrained())
    ['a549', 'isl-nuclei', 'jurkat-dna']
    """
    return {name: preset.as_dict() for name, preset in _table().items()}


def get_preset(name: str) -> Preset:
    """The record of a preset, or `UnknownPresetError` listing the known ones."""
    table = _table()
    if name not in table:
        raise UnknownPresetError(
            f"Unknown model {name!r}. Known presets: {', '.join(sorted(table))}; or give a path "
            "to a .keras file (`vsgan models` lists the presets)."
        )
    return table[name]


def preset_recipe(name: str):
    """The `vsgan.training.Recipe` a preset was trained with; `NAME-l1` gives its L1 baseline."""
    from vsgan.training.recipes import Recipe, l1_baseline

    base = name.removesuffix(L1_SUFFIX)
    recipe = Recipe.from_config(dict(get_preset(base).recipe))
    return l1_baseline(recipe) if name.endswith(L1_SUFFIX) else recipe


def load_pretrained(name_or_path: str | os.PathLike, **kwargs):
    """A ready model: a preset name, or a `.keras` file a user trained.

    The model is not compiled; `vsgan.stain`, sampling and export work at once; call
    `compile()` to fine-tune. `.keras` files load in Keras safe mode.

    Args:
        name_or_path: a name from `list_pretrained()` or a path to a `.keras` file.
        **kwargs: passed to the converter of archive presets (e.g. `archive=` for "a549").

    Returns:
        A `vsgan.Pix2PixHD` with `input_channels`, `output_channels` and its preprocessor.

    Example:
    >>> model = load_pretrained("isl-nuclei")
    >>> model.in_channels, model.output_channels
    (13, ['dapi_confocal_maxproj'])
    """
    name = os.fspath(name_or_path)
    if name.endswith(".keras"):
        return _load_keras_file(name)
    preset = get_preset(name)
    if preset.source == "pix2pixhd-archive":
        from vsgan.zoo.a549 import load_a549

        return load_a549(**kwargs)
    if kwargs:
        raise InputError(f"preset {name!r} takes no options, got {sorted(kwargs)}.")
    return _load_bundled(preset)


def _load_keras_file(path: str):
    import keras

    from vsgan.models import Pix2PixHD

    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such file. Give the path of a .keras model file.")
    try:
        model = keras.models.load_model(path, safe_mode=True, compile=True)
    except Exception as error:  # zip, h5 and config errors all mean the same to a user
        raise ModelFileError(
            f"{path}: cannot be loaded as a vsgan model ({type(error).__name__}: {error}). "
            "Fix: give a .keras file written by vsgan (model.save or `vsgan train`)."
        ) from None
    if not isinstance(model, Pix2PixHD):
        raise ModelFileError(f"{path} holds a {type(model).__name__}, not a vsgan Pix2PixHD.")
    return model


def _load_bundled(preset: Preset):
    from vsgan.models import Pix2PixHD

    path = weights_dir() / str(preset.weights)
    if not path.is_file():
        raise ModelFileError(
            f"{path}: the weights of preset {preset.name!r} are missing. Reinstall vsgan."
        )
    got = sha256(path)
    if got != preset.sha256:
        raise ChecksumError(
            f"{path}: sha256 {got} does not match the recorded {preset.sha256}: the file is "
            "corrupt or was replaced. Reinstall vsgan."
        )
    model = Pix2PixHD.from_config(preset.config)
    try:
        model.load_weights(path)
    except Exception as error:
        raise ModelFileError(
            f"{path}: does not fit the architecture of preset {preset.name!r} ({error})."
        ) from None
    return model


def save_preset(model, name: str, folder: str | os.PathLike, **record: Any) -> dict[str, Any]:
    """Writes `<name>.weights.h5` and the record `<name>.json` (with sha256) into `folder`.

    Args:
        model: the trained model (saved without optimizer state, to keep it small).
        name: the preset name.
        folder: usually the repository's `weights/`.
        **record: description, dataset, dataset_args, recipe, metrics, training, card, ...:
            stored in the record.

    Returns:
        The record as a dict.
    """
    from vsgan.models import Pix2PixHD

    folder = Path(folder)
    weights = folder / f"{name}.weights.h5"
    fresh = Pix2PixHD.from_config(model.get_config())  # uncompiled: no optimizer slots
    fresh.set_weights(model.get_weights())
    with atomic_path(weights) as tmp:
        fresh.save_weights(tmp)
    recipe = record.pop("recipe", {"dataset": record.get("dataset", "")})
    info = {
        "name": name,
        "description": record.pop("description", ""),
        "source": "bundled",
        "dataset": record.pop("dataset", recipe.get("dataset", "")),
        "dataset_args": record.pop("dataset_args", recipe.get("dataset_args", {})),
        "recipe": recipe,
        "weights": weights.name,
        "sha256": sha256(weights),
        "card": record.pop("card", f"{name}.md"),
        "input_channels": model.input_channels,
        "output_channels": model.output_channels,
        **record,
        "config": model.get_config(),
    }
    with atomic_path(folder / f"{name}.json") as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")
    return info
