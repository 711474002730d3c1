"""Reads PyTorch zip checkpoints into numpy arrays without torch and without running code.

A `torch.save` file is a zip holding `<root>/data.pkl`, a pickle whose tensors refer by
persistent id to raw little-endian buffers `<root>/data/<key>`. Unpickling an untrusted
file normally executes whatever callables it names; here a restricted unpickler resolves
only the names a plain state dict needs, each to a harmless local stand-in.

Untrusted files are bounded before anything is built from them, so every answer is either
the weights or a `ModelFileError`, in bounded time and memory:

1. the archive: every member's declared size, compression method and flags are checked
   before it is read (encrypted members, methods other than stored/deflate, and members
   that would inflate far beyond their compressed size are refused);
2. the pickle: its opcodes are scanned first (`pickletools.genops`, no object is made):
   size, opcode count, memo indices, the nesting depth of the object graph, that dict
   keys and set members are plain values (no tuples, whose hashing a crafted file can
   make exponential), and that only the allowed names are referenced;
3. every tensor: its size, stride and offset must stay inside its storage, which must
   match its archive member, and the copies made stay within the bytes the file holds.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import pickletools
import re
import zipfile
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
_ITEMSIZE = {
    name: 2 if dt == "bfloat16" else np.dtype(dt).itemsize for name, dt in _STORAGE_DTYPES.items()
}

# Keys under which training scripts commonly nest the weights in a bigger checkpoint dict.
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "netG", "generator")

# Bounds on untrusted files (module attributes, so a user with a genuinely larger
# checkpoint can raise them). pix2pixHD's largest generator holds about 180 M weights.
MAX_MEMBER_BYTES = 4 * 2**30  # one storage
MAX_TOTAL_BYTES = 8 * 2**30  # all members together, as declared
MAX_PICKLE_BYTES = 64 * 2**20  # data.pkl (a state dict's is tens of KB)
MAX_PICKLE_OPS = 2_000_000
MAX_DEPTH = 32  # a state dict nested in a checkpoint dict is about 6 deep
MAX_MEMBERS = 100_000
MAX_DEFLATE_RATIO = 100  # real weights deflate by ~1.1x; zip bombs by 1000x
MAX_TENSOR_DIMS = 8

_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    *(("torch", name) for name in _STORAGE_DTYPES),
}
_MODEL_FILE_FIX = "Fix: re-save it in PyTorch with torch.save(model.state_dict(), path)."


class _StorageType:
    """Stand-in for a `torch.<X>Storage` class: only remembers the element dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _Budget:
    """Bytes the tensors of one file may still copy out: what its storages hold, twice."""

    def __init__(self):
        self.left = 1 << 20

    def grant(self, nbytes: int) -> None:
        self.left += 2 * nbytes

    def spend(self, nbytes: int) -> None:
        if nbytes > self.left:
            raise _bad_record(
                f"set of tensors copying {nbytes} more bytes than the file's storages hold"
            )
        self.left -= nbytes


_BUDGET: list[_Budget] = []


def _whole(value: Any, what: str, low: int = 0, high: int = 2**62) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad_record(f"{what} ({_describe(value)})")
    return value


def _describe(value: Any) -> str:
    """A short, bounded description of an untrusted value (never its full repr)."""
    if isinstance(value, bool | float | type(None)):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if abs(value) < 10**30 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, str):
        return repr(value[:40] + ("..." if len(value) > 40 else ""))
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, tuple | list) and len(value) <= 8:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return _describe_ints(value)
    return f"a {type(value).__name__}"


def _short(value: Any) -> str:
    return value[:60] if isinstance(value, str) else _describe(value)


def _describe_ints(values) -> str:
    return "(" + ", ".join(_describe(v) for v in values) + ")"


def _rebuild_tensor_v2(
    storage: np.ndarray,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> np.ndarray:
    """Numpy twin of `torch._utils._rebuild_tensor_v2`: a strided view, copied out.

    Every index the view can reach must lie inside the storage, and the tensor may not
    hold more elements than its storage (a stride-0 view of one number cannot become a
    gigabyte).
    """
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise _bad_record(f"tensor whose storage is {_describe(storage)}")
    if not isinstance(size, tuple | list) or not isinstance(stride, tuple | list):
        raise _bad_record(f"tensor of size {_describe(size)} and stride {_describe(stride)}")
    if len(size) > MAX_TENSOR_DIMS or len(size) != len(stride):
        raise _bad_record(f"tensor of {len(size)} sizes and {len(stride)} strides")
    size = tuple(_whole(n, "tensor size") for n in size)
    stride = tuple(_whole(s, "tensor stride") for s in stride)
    offset = _whole(storage_offset, "tensor offset")
    numel = 1
    for n in size:
        numel *= n
    if numel == 0:
        return np.zeros(size, dtype=storage.dtype)
    if numel > storage.size:
        raise _bad_record(
            f"tensor of {numel} elements (size {_describe_ints(size)}, stride "
            f"{_describe_ints(stride)}) viewing a storage of {storage.size}"
        )
    # as_strided reads raw memory: prove the furthest element lies inside the buffer first.
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise _bad_record(
            f"tensor reaching element {last} of a storage holding {storage.size} elements"
        )
    if _BUDGET:
        _BUDGET[-1].spend(numel * storage.itemsize)
    base = storage[offset:]
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        base, shape=size, strides=[s * item for s in stride], writeable=False
    )
    return np.array(view, order="C", copy=True)


def _rebuild_parameter(data: np.ndarray, requires_grad: bool = False, hooks: Any = None):
    """Numpy twin of `torch._utils._rebuild_parameter` (an `nn.Parameter` is its data)."""
    if not isinstance(data, np.ndarray):
        raise _bad_record(f"parameter holding {_describe(data)}")
    return data


def _bad_record(what: str) -> ModelFileError:
    return ModelFileError(
        f"The checkpoint holds an inconsistent {what}; the file is corrupt, truncated or "
        "crafted. Fix: download or copy it again from a source you trust."
    )


def _refuse(path: Path | str, why: str, fix: str = _MODEL_FILE_FIX) -> ModelFileError:
    return ModelFileError(f"Refusing checkpoint '{path}': {why}. {fix}")


# ------------------------------------------------------------------- 1. the archive
def check_archive(
    archive: zipfile.ZipFile, path: Path | str, only: list[str] | None = None
) -> None:
    """Refuses a zip whose members cannot be read within bounded time and memory.

    Checked from the central directory only, before any member is decompressed.

    Args:
        archive: the open zip.
        path: its path, for messages.
        only: check just these members (e.g. two checkpoints inside a larger archive).
    """
    infos = archive.infolist()
    if only is not None:
        infos = [i for i in infos if i.filename in only]
    if len(infos) > MAX_MEMBERS:
        raise _refuse(path, f"the archive has {len(infos)} members (more than {MAX_MEMBERS})")
    total = 0
    for info in infos:
        name = info.filename[:80]
        if info.flag_bits & 0x1:
            raise _refuse(
                path,
                f"member '{name}' is encrypted (a checkpoint never is)",
                "Fix: save it without a password, e.g. torch.save(state_dict, path).",
            )
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            method = {9: "deflate64", 12: "bzip2", 14: "lzma", 93: "zstandard"}.get(
                info.compress_type, f"method {info.compress_type}"
            )
            raise _refuse(
                path,
                f"member '{name}' is compressed with {method}; torch.save stores members "
                "uncompressed and vsgan reads only stored or deflated members",
                "Fix: use the file torch.save wrote, or re-zip it with plain deflate "
                "(zip -r) or without compression (zip -0).",
            )
        if info.file_size > MAX_MEMBER_BYTES:
            raise _refuse(
                path,
                f"member '{name}' declares {info.file_size} bytes, more than vsgan reads "
                f"({MAX_MEMBER_BYTES}, vsgan.zoo.torch_checkpoint.MAX_MEMBER_BYTES)",
                "Fix: check the file; raise MAX_MEMBER_BYTES for a genuinely larger model.",
            )
        if (
            info.compress_type == zipfile.ZIP_DEFLATED
            and info.file_size > 1 << 20
            and info.file_size > MAX_DEFLATE_RATIO * max(1, info.compress_size)
        ):
            raise _refuse(
                path,
                f"member '{name}' would inflate {info.compress_size} bytes into "
                f"{info.file_size} (a ratio above {MAX_DEFLATE_RATIO}: a zip bomb, not weights)",
                "Fix: use the file torch.save wrote.",
            )
        total += info.file_size
    if total > MAX_TOTAL_BYTES:
        raise _refuse(
            path,
            f"its members declare {total} bytes together, more than vsgan reads "
            f"({MAX_TOTAL_BYTES}, vsgan.zoo.torch_checkpoint.MAX_TOTAL_BYTES)",
            "Fix: check the file; raise MAX_TOTAL_BYTES for a genuinely larger model.",
        )


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes, never more than its (already checked) declared size."""
    with archive.open(info) as f:
        data = f.read(info.file_size + 1)
    if len(data) != info.file_size:
        raise _bad_record(f"archive member '{info.filename[:80]}' of the wrong length")
    return data


# -------------------------------------------------------------------- 2. the pickle
_ATOMS = {
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING", "BINSTRING",
    "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "UNICODE",
    "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "NONE", "NEWTRUE", "NEWFALSE", "FLOAT",
    "BINFLOAT",
}  # fmt: skip
_EMPTY = {"EMPTY_LIST": "list", "EMPTY_DICT": "dict", "EMPTY_TUPLE": "tuple", "EMPTY_SET": "set"}
_FROM_MARK = {"LIST": "list", "DICT": "dict", "TUPLE": "tuple", "FROZENSET": "frozenset"}
_TUPLE_N = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GETS = {"GET", "BINGET", "LONG_BINGET"}
_NOOPS = {"PROTO", "FRAME", "STOP"}
_MARK = -1


class _Graph:
    """The objects a pickle would build, as ids with kinds and child edges; nothing is made."""

    def __init__(self):
        self.kind: list[str] = []
        self.value: list[Any] = []  # short strings only (for STACK_GLOBAL)
        self.children: list[list[int]] = []

    def new(self, kind: str, children=(), value=None) -> int:
        self.kind.append(kind)
        self.value.append(value)
        self.children.append(list(children))
        return len(self.kind) - 1

    def depth(self) -> int:
        """Longest path from any object; a cycle counts as infinitely deep."""
        n = len(self.kind)
        depth = [0] * n
        state = [0] * n  # 0 new, 1 on the path, 2 done
        for root in range(n):
            if state[root]:
                continue
            stack = [(root, 0)]
            state[root] = 1
            while stack:
                node, i = stack[-1]
                kids = self.children[node]
                if i < len(kids):
                    stack[-1] = (node, i + 1)
                    kid = kids[i]
                    if state[kid] == 1:
                        return MAX_DEPTH + 1
                    if state[kid] == 0:
                        state[kid] = 1
                        stack.append((kid, 0))
                    continue
                depth[node] = 1 + max((depth[k] for k in kids), default=-1)
                if depth[node] > MAX_DEPTH:
                    return depth[node]
                state[node] = 2
                stack.pop()
        return max(depth, default=0)


def scan_pickle(data: bytes, path: Path | str = "<pickle>") -> None:
    """Refuses a pickle a plain state dict would never be, from its opcodes alone.

    Raises:
        ModelFileError: too large, too many opcodes, an opcode that builds arbitrary
            objects, a name outside the allowlist, a memo index never stored or out of
            bounds, a dict key / set member that is not a plain value, or an object graph
            nested deeper than `MAX_DEPTH` (or cyclic).
    """
    if len(data) > MAX_PICKLE_BYTES:
        raise _refuse(path, f"its pickle has {len(data)} bytes (more than {MAX_PICKLE_BYTES})")
    graph = _Graph()
    stack: list[int] = []
    memo: dict[int, int] = {}

    def pop(k: int = 1) -> list[int]:
        if len(stack) < k or _MARK in stack[len(stack) - k :]:
            raise _bad_record("pickle (its stack underflows)")
        out = stack[len(stack) - k :]
        del stack[len(stack) - k :]
        return out

    def pop_mark() -> list[int]:
        try:
            at = len(stack) - 1 - stack[::-1].index(_MARK)
        except ValueError:
            raise _bad_record("pickle (a mark is missing)") from None
        out = stack[at + 1 :]
        del stack[at:]
        return out

    def plain(items: list[int], what: str) -> None:
        for i in items:
            if graph.kind[i] != "atom":
                raise _refuse(
                    path,
                    f"its pickle uses a {graph.kind[i]} as a {what} (a state dict's keys "
                    "are names)",
                )

    try:
        for count, (op, arg, _pos) in enumerate(pickletools.genops(data)):
            if count >= MAX_PICKLE_OPS:
                raise _refuse(path, f"its pickle has more than {MAX_PICKLE_OPS} opcodes")
            name = op.name
            if name in _ATOMS:
                short = arg if isinstance(arg, str) and len(arg) <= 200 else None
                stack.append(graph.new("atom", value=short))
            elif name in _EMPTY:
                stack.append(graph.new(_EMPTY[name]))
            elif name in _FROM_MARK:
                items = pop_mark()
                if name == "DICT":
                    plain(items[0::2], "dict key")
                if name == "FROZENSET":
                    plain(items, "set member")
                stack.append(graph.new(_FROM_MARK[name], items))
            elif name in _TUPLE_N:
                stack.append(graph.new("tuple", pop(_TUPLE_N[name])))
            elif name == "MARK":
                stack.append(_MARK)
            elif name == "POP":
                pop()
            elif name == "POP_MARK":
                pop_mark()
            elif name == "DUP":
                stack.append(pop()[0])
                stack.append(stack[-1])
            elif name in ("APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS"):
                items = pop(1) if name == "APPEND" else pop(2) if name == "SETITEM" else None
                if items is None:
                    items = pop_mark()
                if not stack or stack[-1] == _MARK:
                    raise _bad_record("pickle (nothing to add items to)")
                target = stack[-1]
                want = {"APPEND": "list", "APPENDS": "list", "ADDITEMS": "set"}.get(name, "dict")
                kind = graph.kind[target]
                if not (kind == want or (want == "dict" and kind == "odict")):
                    raise _bad_record(f"pickle ({name} on a {kind})")
                if name in ("SETITEM", "SETITEMS"):
                    if len(items) % 2:
                        raise _bad_record("pickle (a key without a value)")
                    plain(items[0::2], "dict key")
                if name == "ADDITEMS":
                    plain(items, "set member")
                graph.children[target].extend(items)
            elif name in _PUTS or name == "MEMOIZE":
                if not stack or stack[-1] == _MARK:
                    raise _bad_record("pickle (memoizing nothing)")
                index = len(memo) if name == "MEMOIZE" else arg
                if not isinstance(index, int) or not 0 <= index <= MAX_PICKLE_OPS:
                    raise _refuse(path, f"its pickle stores memo index {_describe(index)}")
                memo[index] = stack[-1]
            elif name in _GETS:
                if arg not in memo:
                    raise _bad_record(f"pickle (memo index {_describe(arg)} read before stored)")
                stack.append(memo[arg])
            elif name in ("GLOBAL", "STACK_GLOBAL"):
                if name == "GLOBAL":
                    module, _, attr = str(arg).partition(" ")
                else:
                    module, attr = (graph.value[i] for i in pop(2))
                if (module, attr) not in _ALLOWED_GLOBALS:
                    raise ModelFileError(
                        f"Refusing to load '{_short(module)}.{_short(attr)}' "
                        f"from checkpoint '{path}': the file is not a plain PyTorch state dict "
                        "(only tensors, dicts and numbers are read, nothing is executed). "
                        + _MODEL_FILE_FIX
                    )
                stack.append(graph.new(f"global:{attr}"))
            elif name == "REDUCE":
                func, args = pop(2)
                fkind = graph.kind[func]
                if graph.kind[args] != "tuple":
                    raise _bad_record("pickle (a call without an argument tuple)")
                if fkind == "global:OrderedDict":
                    if graph.children[args]:
                        raise _refuse(path, "its pickle fills an OrderedDict from a call")
                    stack.append(graph.new("odict"))
                elif fkind in ("global:_rebuild_tensor_v2", "global:_rebuild_parameter"):
                    stack.append(graph.new("tensor", [args]))
                else:
                    raise _refuse(path, f"its pickle calls a {fkind.split(':')[-1]}")
            elif name == "BUILD":
                target, state = pop(2)
                if graph.kind[target] != "odict" or graph.kind[state] not in ("dict", "odict"):
                    raise _refuse(path, f"its pickle sets the state of a {graph.kind[target]}")
                graph.children[target].append(state)
                stack.append(target)
            elif name == "BINPERSID":
                stack.append(graph.new("storage", pop(1)))
            elif name in _NOOPS:
                pass
            else:  # INST, OBJ, NEWOBJ(_EX), EXT*, PERSID, buffers: not in a state dict
                raise _refuse(path, f"its pickle uses the opcode {name}, which builds objects")
    except ModelFileError:
        raise
    except (ValueError, IndexError, TypeError) as err:  # genops on a malformed stream
        raise _bad_record(f"pickle ({type(err).__name__}: {str(err)[:200]})") from None
    if graph.depth() > MAX_DEPTH:
        raise _refuse(path, f"its objects nest deeper than {MAX_DEPTH} levels (or in a cycle)")


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
            f"Refusing to load '{_short(module)}.{_short(name)}' from the checkpoint: "
            "the file is not a plain PyTorch state dict (only tensors, dicts and numbers are "
            "read, nothing is executed). " + _MODEL_FILE_FIX
        )

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise _bad_record(f"persistent id ({_describe(pid)})")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise _bad_record(f"storage type ({_describe(storage_type)})")
        if not isinstance(key, str) or not re.fullmatch(r"[\w.-]{1,64}", key):
            raise _bad_record(f"storage key ({_describe(key)})")
        numel = _whole(numel, "storage length")
        if key not in self._storages:
            self._storages[key] = self._read_storage(key, storage_type, numel)
        storage = self._storages[key]
        if storage.dtype.name != (
            "float32" if storage_type.dtype == "bfloat16" else storage_type.dtype
        ):
            raise _bad_record(f"storage '{key}' read as two dtypes")
        return storage

    def _read_storage(self, key: str, storage_type: _StorageType, numel: int) -> np.ndarray:
        name = f"{self._root}/data/{key}"
        try:
            info = self._archive.getinfo(name)
        except KeyError:
            raise _bad_record(f"reference to missing storage '{key}'") from None
        needed = numel * _ITEMSIZE[storage_type.name]
        if not needed <= info.file_size <= needed + 4096:
            raise _bad_record(
                f"storage '{key}' of {info.file_size} bytes for {numel} elements of "
                f"{storage_type.dtype}"
            )
        raw = _read_member(self._archive, info)[:needed]
        if _BUDGET:
            _BUDGET[-1].grant(needed if storage_type.dtype != "bfloat16" else 2 * needed)
        if storage_type.dtype == "bfloat16":
            # numpy has no bfloat16: widen the 16 stored bits to the top half of a float32.
            bits = np.frombuffer(raw, dtype=self._byteorder + "u2")
            return (bits.astype(np.uint32) << 16).view(np.float32)
        np_dtype = np.dtype(storage_type.dtype).newbyteorder(self._byteorder)
        return np.frombuffer(raw, dtype=np_dtype, count=numel).astype(np_dtype.newbyteorder("="))


# PyTorch's legacy (pre-1.6) serialization: a raw pickle stream starting with this number.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _legacy_message(path: Path) -> str | None:
    with open(path, "rb") as f:
        head = f.read(32)
    if head[:1] != b"\x80":
        return None
    legacy = _LEGACY_MAGIC.to_bytes(10, "little") in head
    if not legacy and not head.startswith(b"\x80\x02"):
        return None
    return (
        f"Cannot read checkpoint '{path}': it is in PyTorch's legacy (pre-1.6) "
        "serialization format (as NVIDIA's 2018 pix2pixHD checkpoints), which vsgan reads "
        "only after re-saving in the zip format. Fix: with PyTorch 1.6 or newer, run "
        f"python -c \"import torch; torch.save(torch.load('{path}', map_location='cpu'), "
        f"'{path.with_suffix('')}_zip.pth')\" (torch >= 2.6 needs weights_only=False in "
        "torch.load: only for a file you trust), then convert the new file."
    )


def _load_pickle(path: Path) -> Any:
    """Unpickles `<root>/data.pkl` of a torch zip checkpoint with the restricted unpickler."""
    if not path.is_file():
        raise ModelFileError(
            f"Checkpoint '{path}' does not exist. Fix: check the path, or download the file first."
        )
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        message = _legacy_message(path)
        if message:
            raise ModelFileError(message) from None
        raise ModelFileError(
            f"Cannot read checkpoint '{path}': it is not a complete zip archive ({err}); it is "
            "truncated or not a PyTorch checkpoint. Fix: download or copy the file again."
        ) from None
    except (OSError, ValueError, EOFError, OverflowError) as err:
        raise ModelFileError(
            f"Cannot read checkpoint '{path}' ({type(err).__name__}: {str(err)[:200]}). "
            "Fix: download or copy the file again."
        ) from None
    budget = _Budget()
    _BUDGET.append(budget)
    try:
        with archive:
            check_archive(archive, path)
            pickles = [i for i in archive.infolist() if i.filename.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise ModelFileError(
                    f"'{path}' is a zip file but not a PyTorch checkpoint (found "
                    f"{len(pickles)} '<root>/data.pkl' entries, expected 1). " + _MODEL_FILE_FIX
                )
            root = pickles[0].filename[: -len("/data.pkl")]
            byteorder = "<"
            if f"{root}/byteorder" in archive.namelist():
                info = archive.getinfo(f"{root}/byteorder")
                if info.file_size > 16:
                    raise _bad_record("byteorder record")
                byteorder = ">" if _read_member(archive, info).strip() == b"big" else "<"
            if pickles[0].file_size > MAX_PICKLE_BYTES:
                raise _refuse(
                    path,
                    f"its pickle declares {pickles[0].file_size} bytes (more than "
                    f"{MAX_PICKLE_BYTES})",
                )
            data = _read_member(archive, pickles[0])
            scan_pickle(data, path)
            return _RestrictedUnpickler(data, archive, root, byteorder).load()
    except ModelFileError:
        raise
    except MemoryError:
        raise ModelFileError(
            f"Checkpoint '{path}' needs more memory than is available. Fix: check the file is "
            "a pix2pixHD state dict; free memory for a genuinely large model."
        ) from None
    except Exception as err:  # a damaged member (zlib.error, BadZipFile, CRC), a bad pickle
        raise ModelFileError(
            f"Checkpoint '{path}' is corrupt ({type(err).__name__}: {str(err)[:200]}). "
            "Fix: download or copy the file again."
        ) from None
    finally:
        _BUDGET.remove(budget)


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items())
    )


def load_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Loads a PyTorch state dict from a `torch.save` zip file, without torch.

    Only tensors, dicts, lists and numbers are read; any other object in the pickle is
    refused before it is constructed, so a malicious file cannot run code, and a crafted
    one is refused within bounded time and memory (see the module docstring).

    Args:
        path: a `.pth`/`.pt` file written by `torch.save` (PyTorch 1.6 or newer). It may
            hold the state dict itself or a dict that holds it under `state_dict`,
            `model`, `model_state_dict`, `net`, `netG` or `generator`.

    Returns:
        Parameter name -> numpy array (C order, native byte order, torch's shapes), in the
        order of the checkpoint. A `module.` prefix from `nn.DataParallel` is removed.

    Raises:
        ModelFileError: the file is missing, not a torch zip checkpoint, in the legacy
            format (the message says how to re-save it), corrupt, truncated, crafted,
            holds objects other than tensors, or holds no state dict.
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
        if isinstance(obj, dict):
            keys = [_describe(k) for k in list(obj)[:20]]
            found = f"a dict with keys {', '.join(keys)}" + (" ..." if len(obj) > 20 else "")
        else:
            found = _describe(obj)
        raise ModelFileError(
            f"Checkpoint '{path}' holds no state dict (found {found}). Expected a dict of "
            f"tensors, possibly under one of the keys {list(_NESTED_KEYS)}. " + _MODEL_FILE_FIX
        )
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)
