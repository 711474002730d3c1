"""Reads PyTorch zip checkpoints into numpy arrays without torch and without running code.

A `torch.save` file is a zip holding `<root>/data.pkl`, a pickle whose tensors refer by
persistent id to raw little-endian buffers `<root>/data/<key>`. Unpickling an untrusted
file normally executes whatever callables it names; here a restricted unpickler resolves
only the names a plain state dict needs, each to a harmless local stand-in.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from vsgan.errors import ModelFileError

# torch's legacy typed-storage classes (how `torch.save` names tensor dtypes).
_STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}

# Keys under which training scripts commonly nest the weights in a bigger checkpoint dict.
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "netG", "generator")


class _StorageType:
    """Stand-in for a `torch.<X>Storage` class: only remembers the element dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


def _rebuild_tensor_v2(
    storage: np.ndarray,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> np.ndarray:
    """Numpy twin of `torch._utils._rebuild_tensor_v2`: a strided view, copied out."""
    size = tuple(int(n) for n in size)
    stride = tuple(int(s) for s in stride)
    if len(size) != len(stride) or any(n < 0 for n in size) or any(s < 0 for s in stride):
        raise _bad_record(f"tensor of size {size} and stride {stride}")
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype)
    # as_strided reads raw memory: prove the furthest element lies inside the buffer first.
    last = int(storage_offset) + sum((n - 1) * s for n, s in zip(size, stride))
    if storage_offset < 0 or last >= storage.size:
        raise _bad_record(
            f"tensor reaching element {last} of a storage holding {storage.size} elements"
        )
    base = storage[int(storage_offset) :]
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        base, shape=size, strides=[s * item for s in stride], writeable=False
    )
    return np.array(view, order="C", copy=True)


def _rebuild_parameter(data: np.ndarray, requires_grad: bool = False, hooks: Any = None):
    """Numpy twin of `torch._utils._rebuild_parameter` (an `nn.Parameter` is its data)."""
    return data


def _bad_record(what: str) -> ModelFileError:
    return ModelFileError(
        f"The checkpoint holds an inconsistent {what}; the file is corrupt or truncated. "
        "Download or copy it again."
    )


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only tensor-rebuild names and reads storages from the zip."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str, byteorder: str):
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._root = root
        self._byteorder = byteorder
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise ModelFileError(
            f"Refusing to load '{module}.{name}' from the checkpoint: the file is not a plain "
            "PyTorch state dict (only tensors, dicts and numbers are read, nothing is "
            "executed). Re-save it in PyTorch with torch.save(model.state_dict(), path)."
        )

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise _bad_record(f"persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise _bad_record(f"storage type {storage_type!r}")
        key = str(key)
        if key not in self._storages:
            self._storages[key] = self._read_storage(key, storage_type, int(numel))
        return self._storages[key]

    def _read_storage(self, key: str, storage_type: _StorageType, numel: int) -> np.ndarray:
        try:
            raw = self._archive.read(f"{self._root}/data/{key}")
        except KeyError:
            raise _bad_record(f"reference to missing storage '{key}'") from None
        dtype = storage_type.dtype
        if dtype == "bfloat16":
            # numpy has no bfloat16: widen the 16 stored bits to the top half of a float32.
            bits = np.frombuffer(raw, dtype=self._byteorder + "u2")
            if bits.size < numel:
                raise _bad_record(f"storage '{key}' of {bits.size} of {numel} elements")
            return (bits[:numel].astype(np.uint32) << 16).view(np.float32)
        np_dtype = np.dtype(dtype).newbyteorder(self._byteorder)
        if len(raw) < numel * np_dtype.itemsize:
            raise _bad_record(f"storage '{key}' of {len(raw)} bytes for {numel} elements")
        return np.frombuffer(raw, dtype=np_dtype, count=numel).astype(np_dtype.newbyteorder("="))


def _load_pickle(path: Path) -> Any:
    """Unpickles `<root>/data.pkl` of a torch zip checkpoint with the restricted unpickler."""
    if not path.is_file():
        raise ModelFileError(
            f"Checkpoint '{path}' does not exist. Check the path, or download the file first."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise ModelFileError(
                    f"'{path}' is a zip file but not a PyTorch checkpoint (found "
                    f"{len(pickles)} '<root>/data.pkl' entries, expected 1)."
                )
            root = pickles[0][: -len("/data.pkl")]
            byteorder = "<"
            if f"{root}/byteorder" in archive.namelist():
                byteorder = ">" if archive.read(f"{root}/byteorder").strip() == b"big" else "<"
            data = archive.read(pickles[0])
            return _RestrictedUnpickler(data, archive, root, byteorder).load()
    except zipfile.BadZipFile as err:
        with open(path, "rb") as f:
            head = f.read(2)
        if head == b"\x80\x02":
            why = (
                "it uses PyTorch's legacy (pre-1.6) format. Re-save it with a recent "
                "PyTorch: torch.save(torch.load(path), path)"
            )
        else:
            why = f"it is not a complete zip archive ({err}); it is truncated or not a checkpoint"
        raise ModelFileError(
            f"Cannot read checkpoint '{path}': {why}. Download or copy the file again."
        ) from None
    except ModelFileError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, OSError, zlib.error) as err:
        # Damaged members raise OSError or zlib.error; bad pickles raise UnpicklingError,
        # EOFError, or TypeError (wrong call arguments).
        raise ModelFileError(
            f"Checkpoint '{path}' is corrupt ({type(err).__name__}: {err}). "
            "Download or copy the file again."
        ) from None


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items())
    )


def load_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Loads a PyTorch state dict from a `torch.save` zip file, without torch.

    Only tensors, dicts, lists and numbers are read; any other object in the pickle is
    refused before it is constructed, so a malicious file cannot run code.

    Args:
        path: a `.pth`/`.pt` file written by `torch.save` (PyTorch 1.6 or newer). It may
            hold the state dict itself or a dict that holds it under `state_dict`,
            `model`, `model_state_dict`, `net`, `netG` or `generator`.

    Returns:
        Parameter name -> numpy array (C order, native byte order, torch's shapes), in the
        order of the checkpoint. A `module.` prefix from `nn.DataParallel` is removed.

    Raises:
        ModelFileError: the file is missing, not a torch zip checkpoint, corrupt,
            truncated, holds objects other than tensors, or holds no state dict.
    """
    path = Path(path)
    obj = _load_pickle(path)
    state = obj if _is_state_dict(obj) else None
    if state is None and isinstance(obj, dict):
        for key in _NESTED_KEYS:
            if _is_state_dict(obj.get(key)):
                state = obj[key]
                break
    if state is None:
        found = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise ModelFileError(
            f"Checkpoint '{path}' holds no state dict (found {found}). Expected a dict of "
            f"tensors, possibly under one of the keys {list(_NESTED_KEYS)}."
        )
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)
