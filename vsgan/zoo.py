"""The model zoo: `list_pretrained()` and `load_pretrained(name_or_path)`.

Bundled presets live in the top-level `weights/` folder (installed as the package
`vsgan.weights`): `<name>.json` (architecture, channels, normalisation, provenance,
held-out metrics, sha256), `<name>.weights.h5` and the model card `<name>.md`.
`a549` is the seed's published pix2pixHD pair, converted on first use (`vsgan.convert`).
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import keras

from vsgan.errors import ChecksumError, ModelFileError, UnknownPresetError
from vsgan.models import Pix2PixHD

# Presets that are not files in weights/: name -> description.
REMOTE_PRESETS = {
    "a549": {
        "description": "The seed's published A549 models (DL@MBL, Zenodo 13173900): phase -> "
        "nuclei + membrane, pix2pixHD global generator (ngf 64, 4 down, 9 blocks), converted "
        "from PyTorch on first use. Needs the archive (no network here): see "
        "vsgan.convert.load_a549.",
        "input_channels": ["phase"],
        "output_channels": ["nuclei", "membrane"],
        "metrics": {},
        "source": "download",
    }
}


def weights_dir() -> Path:
    """The folder of bundled presets (works for wheel and editable installs)."""
    return Path(str(resources.files("vsgan.weights")))


def _bundled() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(weights_dir().glob("*.json")):
        card = json.loads(path.read_text())
        out[card["name"]] = {**card, "source": "bundled", "path": str(path)}
    return out


def list_pretrained() -> dict[str, dict[str, Any]]:
    """Every preset: name -> description, channels, held-out metrics, where weights come from.

    Example:
    >>> sorted(vsgan.list_pretrained())  # doctest: +SKIP
    ['a549', 'isl-nuclei', 'jurkat-dna']
    """
    return {**_bundled(), **REMOTE_PRESETS}


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_pretrained(name_or_path: str | os.PathLike, **kwargs) -> Pix2PixHD:
    """A ready model: a preset name, or a `.keras` file a user trained.

    The model is not compiled; `vsgan.stain`, `sample` and `export_generator` work at
    once; call `compile()` to fine-tune. `.keras` files load in Keras safe mode.

    Args:
        name_or_path: a name from `list_pretrained()` or a path to a `.keras` file.
        **kwargs: passed to the loader of remote presets (e.g. `archive=` for "a549").

    Returns:
        A `Pix2PixHD` with `input_channels`, `output_channels` and `normalization` set.

    Example:
    >>> model = vsgan.load_pretrained("isl-nuclei")  # doctest: +SKIP
    >>> result = vsgan.stain(model, phase_stack, samples=8)  # doctest: +SKIP
    """
    name = os.fspath(name_or_path)
    if name.endswith(".keras"):
        return _load_keras_file(name)
    bundled = _bundled()
    if name in bundled:
        return _load_bundled(bundled[name])
    if name == "a549":
        from vsgan.convert import load_a549

        return load_a549(**kwargs)
    known = sorted({*bundled, *REMOTE_PRESETS})
    raise UnknownPresetError(
        f"Unknown model {name!r}. Known presets: {', '.join(known)}; or give a path to a "
        ".keras file (`vsgan models` lists the presets)."
    )


def _load_keras_file(path: str) -> Pix2PixHD:
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


def _load_bundled(card: dict[str, Any]) -> Pix2PixHD:
    path = weights_dir() / card["weights"]
    if not path.is_file():
        raise ModelFileError(
            f"{path}: the weights of preset {card['name']!r} are missing. Reinstall vsgan."
        )
    got = sha256(path)
    if got != card["sha256"]:
        raise ChecksumError(
            f"{path}: sha256 {got} does not match the recorded {card['sha256']}: the file is "
            "corrupt or was replaced. Reinstall vsgan."
        )
    model = Pix2PixHD.from_config(card["config"])
    try:
        model.load_weights(path)
    except Exception as error:
        raise ModelFileError(
            f"{path}: does not fit the architecture of preset {card['name']!r} ({error})."
        ) from None
    return model


def save_preset(
    model: Pix2PixHD, name: str, folder: str | os.PathLike, **card: Any
) -> dict[str, Any]:
    """Writes `<name>.weights.h5` and `<name>.json` (with sha256) into `folder`.

    Args:
        model: the trained model (saved without optimizer state, to keep it small).
        name: the preset name.
        folder: usually the repository's `weights/`.
        **card: description, provenance, license, metrics, training: stored in the JSON.

    Returns:
        The JSON card as a dict.
    """
    folder = Path(folder)
    weights = folder / f"{name}.weights.h5"
    fresh = Pix2PixHD.from_config(model.get_config())  # uncompiled: no optimizer slots
    fresh.set_weights(model.get_weights())
    fresh.save_weights(weights)
    info = {
        "name": name,
        **card,
        "input_channels": model.input_channels,
        "output_channels": model.output_channels,
        "config": model.get_config(),
        "weights": weights.name,
        "sha256": sha256(weights),
    }
    (folder / f"{name}.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
