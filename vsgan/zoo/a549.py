"""The seed's published A549 virtual-staining models as one two-channel vsgan stainer.

GANs_MI2I (DL@MBL course) published two pix2pixHD global generators on Zenodo (record
13173900): phase -> nuclei and phase -> cytoplasm/membrane. `load_a549` downloads the
archive once, converts both generators into one `Pix2PixHD(split_outputs=True)` with the
seed's intensity conventions, and caches the result as `.keras`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import keras

from vsgan.errors import ChecksumError, ModelFileError
from vsgan.io.files import atomic_path, sha256
from vsgan.zoo.pix2pixhd import from_pix2pixhd, save_keras_atomic
from vsgan.zoo.torch_checkpoint import check_archive

A549_URL = "https://zenodo.org/records/13173900/files/dlmbl_requisites.zip"
A549_ARCHIVE_NAME = "dlmbl_requisites.zip"
# Unknown: no machine of this project could reach Zenodo to hash the archive. Record the
# sha256 here once someone downloads it; until then the archive is not verified.
A549_SHA256: str | None = None

# Output channel -> generator inside the archive (matched by path suffix, so an extra
# top-level folder from re-zipping does not matter).
A549_MEMBERS = {
    "nuclei": "dlmbl_vsnuclei/dlmbl_vsnuclei/latest_net_G.pth",
    "membrane": "dlmbl_vscyto/dlmbl_vscyto/latest_net_G.pth",
}

# The seed's generator: global only, 1 -> 1, ngf 64, 4 downsamplings, 9 blocks, with
# Monte-Carlo dropout 0.2 in the residual blocks (off unless sampling). Its discriminator
# (ndf 32, 2 scales) saw one stain at a time, so it cannot judge the stacked pair: ours
# starts fresh with the same size.
A549_CONFIG: dict[str, Any] = {
    "in_channels": 1,
    "out_channels": 2,
    "ngf": 64,
    "n_downsample": 4,
    "n_blocks": 9,
    "n_local_enhancers": 0,
    "dropout": 0.2,
    "ndf": 32,
    "num_d": 2,
    "split_outputs": True,
    "input_channels": ["phase"],
    "output_channels": list(A549_MEMBERS),
}

_ARCHITECTURE_KEYS = ("in_channels", "out_channels", "ngf", "n_downsample", "n_blocks")

# Targets were scaled raw / constant * 2 - 1 (no clipping); the phase input stays raw.
A549_TARGET_CONSTANTS = (4400.0, 18372.0)


def a549_normalization() -> dict[str, dict[str, Any]]:
    """The seed's intensity conventions as `Pix2PixHD(normalization=...)`.

    Returns:
        `{"input": identity, "target": fixed}` configs of `vsgan.data.normalize.Normalization`
        (raw phase in; nuclei / membrane in [-1, 1] from 0..4400 / 0..18372 raw counts).
    """
    try:
        from vsgan.data.normalize import Normalization
    except ImportError:  # the data package is optional for conversion
        half = [c / 2.0 for c in A549_TARGET_CONSTANTS]
        common = {"per_field": False, "low": 1.0, "high": 99.8}
        return {
            "input": {"method": "identity", "offset": [0.0], "scale": [1.0], **common},
            "target": {"method": "fixed", "offset": half, "scale": half, **common},
        }
    return {
        "input": Normalization("identity").get_config(),
        "target": Normalization.fixed(list(A549_TARGET_CONSTANTS)).get_config(),
    }


def default_cache_dir() -> Path:
    """`$KERAS_HOME/vsgan`, else `~/.keras/vsgan` (Keras' own cache location)."""
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(keras_home) / "vsgan"


def _offline_help(archive: Path) -> str:
    return (
        f"Download {A549_URL} (the seed's Zenodo record 13173900) on a machine with internet "
        f"access and put it at '{archive}', or pass its location: "
        "load_a549(archive='/path/to/dlmbl_requisites.zip')."
    )


def _download(cache_dir: Path) -> Path:
    """Fetches the archive into `cache_dir` (once), or says how to do it by hand."""
    target = cache_dir / A549_ARCHIVE_NAME
    if target.is_file() and (A549_SHA256 is None or sha256(target) == A549_SHA256):
        return target
    # get_file falls back to /tmp/.keras when the directory is missing: create it first.
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        path = keras.utils.get_file(
            fname=A549_ARCHIVE_NAME,
            origin=A549_URL,
            file_hash=A549_SHA256,
            cache_dir=str(cache_dir),
            cache_subdir="",
        )
    except Exception as err:  # get_file raises plain Exception for network failures
        if A549_SHA256 is not None and target.is_file() and sha256(target) != A549_SHA256:
            _refuse_download(target)
        raise ModelFileError(
            f"Could not download the A549 models ({type(err).__name__}: {err}). "
            + _offline_help(target)
        ) from None
    if A549_SHA256 is not None and sha256(Path(path)) != A549_SHA256:
        _refuse_download(Path(path))
    return Path(path)


def _refuse_download(path: Path) -> None:
    got = sha256(path)
    path.unlink()
    raise ChecksumError(
        f"The downloaded A549 archive has sha256 {got}, not the recorded {A549_SHA256}: it "
        f"is damaged or not the seed's, and was deleted ({path}). Fix: try again, or "
        + _offline_help(path)
    )


def _extract_generators(archive: Path, into: Path) -> list[Path]:
    """Copies the two `latest_net_G.pth` out of the archive; returns them in channel order."""
    if not archive.is_file():
        raise ModelFileError(f"Archive '{archive}' does not exist. " + _offline_help(archive))
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            paths = []
            for channel, suffix in A549_MEMBERS.items():
                found = [n for n in names if n == suffix or n.endswith("/" + suffix)]
                if len(found) != 1:
                    raise ModelFileError(
                        f"'{archive}' holds {len(found)} entries ending in '{suffix}' (the "
                        f"{channel} generator), expected 1: it is not the seed's "
                        f"{A549_ARCHIVE_NAME}. " + _offline_help(archive)
                    )
                check_archive(zf, archive, only=found)  # flags, method, size: before reading
                out = into / f"{channel}.pth"
                with zf.open(found[0]) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)  # streamed, never whole in memory
                paths.append(out)
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as err:
        if isinstance(err, OSError) and err.errno is not None and err.filename is not None:
            raise  # a full disk or permissions in the temporary folder: not the archive's fault
        raise ModelFileError(
            f"'{archive}' is not a readable zip archive ({err}); the download is incomplete "
            "or damaged. Delete it, then: " + _offline_help(archive)
        ) from None
    return paths


def _cache_name(config: dict[str, Any], archive_sha256: str) -> str:
    """`a549-<archive sha256>[-<config digest>].keras`: one cache file per archive and config.

    A second archive never gets the model of the first, and a config override (tests,
    experiments) never shadows the real model's file.
    """
    name = f"a549-{archive_sha256[:16]}"
    if config:
        digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
        name += f"-{digest.hexdigest()[:12]}"
    return name + ".keras"


_INDEX = "a549-index.json"


def _read_index(cache: Path) -> dict[str, Any]:
    try:
        index = json.loads((cache / _INDEX).read_text())
    except (OSError, ValueError):
        return {"archives": {}, "last": {}}
    if not isinstance(index, dict):
        return {"archives": {}, "last": {}}
    index.setdefault("archives", {})
    index.setdefault("last", {})
    return index


def _write_index(cache: Path, index: dict[str, Any]) -> None:
    try:
        with atomic_path(cache / _INDEX) as tmp:
            tmp.write_text(json.dumps(index, indent=1))
    except OSError:
        pass  # only a memo of hashes: the next call hashes again


def _archive_sha256(archive: Path, index: dict[str, Any]) -> str:
    """The archive's sha256, memoised by path, size and modification time."""
    st = archive.stat()
    key = f"{archive.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    digest = index["archives"].get(key)
    if not isinstance(digest, str):
        digest = index["archives"][key] = sha256(archive)
    return digest


def _load_cached(cached: Path):
    """The cached model, or None (with a warning) if the file is damaged."""
    try:
        model = keras.models.load_model(cached)
    except Exception as err:  # a truncated zip, a damaged .h5: Keras raises many types
        warnings.warn(
            f"The cached A549 model '{cached}' is damaged ({type(err).__name__}); it is "
            "converted again from the archive.",
            stacklevel=3,
        )
        return None
    from vsgan.models.pix2pixhd import Pix2PixHD

    return model if isinstance(model, Pix2PixHD) else None


def load_a549(
    archive: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    config: dict[str, Any] | None = None,
    refresh: bool = False,
):
    """The seed's A549 phase -> (nuclei, membrane) stainer, converted once and cached.

    The first call downloads `dlmbl_requisites.zip` from Zenodo (or uses `archive`),
    converts the two pix2pixHD generators and stores `a549.keras` in `cache_dir`; later
    calls load that file and work offline.

    Args:
        archive: a local copy of `dlmbl_requisites.zip`; skips the download.
        cache_dir: where the archive and the converted model live (default
            `~/.keras/vsgan`, or `$KERAS_HOME/vsgan`).
        config: overrides of `A549_CONFIG` (e.g. a tiny architecture in tests); the
            cached file name then records them.
        refresh: convert again even if a cached `.keras` exists.

    The cache file is keyed by the archive's sha256 (and the config), so another archive
    converts again; a damaged cache file is converted again too.

    Returns:
        A `vsgan.Pix2PixHD` with `input_channels == ["phase"]`, `output_channels ==
        ["nuclei", "membrane"]` and the seed's normalisation: raw phase in, targets
        `raw / constant * 2 - 1` with constants 4400 (nuclei) and 18372 (membrane).

    Raises:
        ModelFileError: the archive is missing and cannot be downloaded (the message says
            what to download and where to put it), or it is damaged or not the seed's.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    config = dict(config or {})
    config_key = _cache_name(config, "")
    index = _read_index(cache)
    source = Path(archive) if archive is not None else None
    if source is not None and not source.is_file():
        raise ModelFileError(f"Archive '{source}' does not exist. " + _offline_help(source))
    if source is None and A549_SHA256 is None and (cache / A549_ARCHIVE_NAME).is_file():
        # (with a recorded sha256, `_download` checks the cached archive first)
        source = cache / A549_ARCHIVE_NAME
    if source is not None:
        digest = _archive_sha256(source, index)
    elif A549_SHA256 is not None:
        digest = A549_SHA256
    else:  # offline, archive gone: the model last converted with this config
        digest = index["last"].get(config_key) or ""
    cached = cache / _cache_name(config, digest) if digest else None
    if cached is not None and cached.is_file() and not refresh:
        model = _load_cached(cached)
        if model is not None:
            return model
    if source is None:
        source = _download(cache)
        digest = _archive_sha256(source, index)
        cached = cache / _cache_name(config, digest)
    # The architecture is read from the weights (the published files were never inspected
    # here); the documented one is only compared, so an unexpected file still loads.
    settings = {k: v for k, v in A549_CONFIG.items() if k not in _ARCHITECTURE_KEYS}
    with tempfile.TemporaryDirectory(prefix="vsgan-a549-") as tmp:
        checkpoints = _extract_generators(source, Path(tmp))
        model = from_pix2pixhd(
            checkpoints, **{**settings, "normalization": a549_normalization(), **config}
        )
    differs = {
        k: getattr(model, k)
        for k in _ARCHITECTURE_KEYS
        if k not in config and getattr(model, k) != A549_CONFIG[k]
    }
    if differs:
        warnings.warn(
            f"The A549 generators differ from the documented architecture: {differs}. "
            "They were loaded as stored.",
            stacklevel=2,
        )
    save_keras_atomic(model, cached, overwrite=True)
    index["last"][config_key] = digest
    _write_index(cache, index)
    return model
