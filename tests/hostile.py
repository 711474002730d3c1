"""Builders of hostile PyTorch checkpoints, and a runner that loads files under limits.

The pickles are assembled opcode by opcode, so a test says exactly what a crafted file
holds; `run_limited` loads one in a child process under a memory limit (RLIMIT_AS) and a
timeout, so a regression shows as a failed test, not a hung or swapping suite.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------- pickle assembly
PROTO = b"\x80\x02"
STOP = b"."
MARK = b"("
TUPLE = b"t"
EMPTY_TUPLE = b")"
EMPTY_DICT = b"}"
EMPTY_LIST = b"]"
REDUCE = b"R"
BINPERSID = b"Q"
SETITEM = b"s"
SETITEMS = b"u"
APPEND = b"a"
TUPLE1 = b"\x85"
TUPLE2 = b"\x86"
FALSE = b"\x89"


def s(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def i(value: int) -> bytes:
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def put(k: int) -> bytes:
    return b"r" + struct.pack("<I", k)


def get(k: int) -> bytes:
    return b"j" + struct.pack("<I", k)


def tup(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


def ints(values) -> bytes:
    return tup(*(i(v) for v in values))


def storage(key: str, numel, dtype: str = "FloatStorage") -> bytes:
    return tup(s("storage"), glob("torch", dtype), s(key), s("cpu"), i(numel)) + BINPERSID


def tensor(key="0", numel=4, size=(4,), stride=(1,), offset=0, store: bytes | None = None):
    first = store if store is not None else storage(key, numel)
    args = tup(first, i(offset), ints(size), ints(stride), FALSE,
               glob("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE)  # fmt: skip
    return glob("torch._utils", "_rebuild_tensor_v2") + args + REDUCE


def state_dict(**tensors: bytes) -> bytes:
    body = b"".join(s(k) + v for k, v in tensors.items())
    return PROTO + EMPTY_DICT + MARK + body + SETITEMS + STOP


# ----------------------------------------------------------------- zip assembly
def checkpoint(path: Path, pickle_bytes: bytes, storages: dict[str, bytes] | None = None,
               compression: int = zipfile.ZIP_STORED) -> Path:  # fmt: skip
    """A torch-format zip: `archive/data.pkl` and `archive/data/<key>` members."""
    with zipfile.ZipFile(path, "w", compression) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/byteorder", "little")
        for key, raw in (storages or {}).items():
            z.writestr(f"archive/data/{key}", raw)
    return path


def patch_headers(path: Path, *, flags: int = 0, method: int | None = None,
                  size: int | None = None) -> Path:  # fmt: skip
    """Rewrites every local and central header's flag bits, method or declared size."""
    data = bytearray(path.read_bytes())
    for sig, flag_at, method_at, size_at in ((b"PK\x03\x04", 6, 8, 22), (b"PK\x01\x02", 8, 10, 24)):
        at = data.find(sig)
        while at >= 0:
            struct.pack_into(
                "<H", data, at + flag_at, struct.unpack_from("<H", data, at + flag_at)[0] | flags
            )
            if method is not None:
                struct.pack_into("<H", data, at + method_at, method)
            if size is not None:
                struct.pack_into("<I", data, at + size_at, size)
            at = data.find(sig, at + 4)
    path.write_bytes(bytes(data))
    return path


# ----------------------------------------------------------------- limited runs
_CHILD = r"""
import json, resource, sys
limit = int(sys.argv[1])
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from vsgan.errors import VsganError
call = sys.argv[2]
try:
    if call == "state_dict":
        from vsgan.zoo.torch_checkpoint import load_torch_state_dict
        out = load_torch_state_dict(sys.argv[3])
        print(json.dumps({"ok": {k: list(v.shape) for k, v in out.items()}}))
    elif call == "read_image":
        from vsgan.io.readers import read_image
        out = read_image(sys.argv[3], **json.loads(sys.argv[4]))
        print(json.dumps({"ok": [list(out.shape), out.dtype.name, float(out.max())]}))
    else:
        from vsgan.zoo.pix2pixhd import from_pix2pixhd
        kw = json.loads(sys.argv[4])
        model = from_pix2pixhd(sys.argv[3], **kw)
        print(json.dumps({"ok": model.count_params()}))
except VsganError as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
"""


def run_limited(path: Path, call: str = "state_dict", memory: int = 1 << 30, timeout: int = 60,
                **kwargs) -> dict:  # fmt: skip
    """Loads `path` in a child process under RLIMIT_AS=`memory` and `timeout` seconds.

    Returns {"ok": ...} or {"error": class name, "message": ...}; any other exception, a
    crash (segfault), the memory limit or the timeout fails the assertion here.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(memory), call, str(path), json.dumps(kwargs)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_state_dict(path: Path, arrays: dict) -> Path:
    """A torch-format checkpoint of float32 numpy arrays (one storage each)."""
    import numpy as np

    items, storages = {}, {}
    for k, (name, arr) in enumerate(arrays.items()):
        arr = np.ascontiguousarray(arr, "<f4")
        strides = [s // 4 for s in arr.strides] if arr.ndim else []
        items[name] = tensor(str(k), arr.size, tuple(arr.shape), tuple(strides))
        storages[str(k)] = arr.tobytes()
    return checkpoint(path, state_dict(**items), storages)
