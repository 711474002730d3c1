"""Untrusted PyTorch checkpoints (issue 14, class 1): every crafted file gets a
`ModelFileError` within a bounded time (60 s) and memory (1 GiB address space), loaded in
a child process so that a hang, a crash or a blow-up fails one test, not the suite."""

import zipfile
import zlib

import numpy as np
import pytest
from hostile import (
    APPEND,
    EMPTY_DICT,
    EMPTY_LIST,
    EMPTY_TUPLE,
    MARK,
    PROTO,
    REDUCE,
    SETITEM,
    STOP,
    TUPLE1,
    TUPLE2,
    checkpoint,
    get,
    glob,
    i,
    ints,
    patch_headers,
    put,
    run_limited,
    s,
    state_dict,
    storage,
    tensor,
    tup,
)

FOUR = np.arange(4, dtype="<f4").tobytes()


def memo_dag(levels: int) -> bytes:
    """t0 = (); t_k = (t_{k-1}, t_{k-1}) by memo: hashing t_n visits 2**n tuples."""
    out = EMPTY_TUPLE + put(0)
    for k in range(1, levels + 1):
        out += b"0" + get(k - 1) + get(k - 1) + TUPLE2 + put(k)  # POP the previous level
    return out


def _write(tmp_path, pkl, storages=None, **kw):
    return checkpoint(
        tmp_path / "hostile.pth", pkl, {"0": FOUR} if storages is None else storages, **kw
    )


def _bomb(tmp_path):
    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("archive/data.pkl", state_dict(w=tensor("0", 4)))
        with z.open("archive/data/0", "w", force_zip64=True) as f:
            block = bytes(1 << 24)
            for _ in range(16):  # 256 MiB of zeros deflate to ~250 KB
                f.write(block)
    return path


def _lying_size(tmp_path):
    """A member whose header declares 16 bytes but whose stream inflates to 64 MiB."""
    path = tmp_path / "liar.pth"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", state_dict(w=tensor("0", 4)))
        z.writestr("archive/data/0", bytes(64 << 20))
    data = bytearray(path.read_bytes())
    for sig, at_size in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.rfind(sig)
        data[at + at_size : at + at_size + 4] = (16).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


def _shared_storage_views(n):
    body = b"".join(
        s(f"w{k}") + tensor("0", 1 << 20, size=(1 << 20,), stride=(1,)) for k in range(n)
    )
    return PROTO + EMPTY_DICT + MARK + body + b"u" + STOP


# (case id, builder(tmp_path) -> path, words the message must contain)
CASES = [
    # the examples
    (
        "tuple-keys-nested-by-memo",
        lambda t: _write(t, PROTO + EMPTY_DICT + memo_dag(60) + i(1) + SETITEM + STOP),
        "dict key",
    ),
    (
        "ordered-dict-filled-by-call",
        lambda t: _write(
            t,
            PROTO
            + glob("collections", "OrderedDict")
            + tup(MARK + memo_dag(60) + i(1) + TUPLE2 + b"l")
            + REDUCE
            + STOP,
        ),
        "OrderedDict",
    ),
    (
        "200000-deep-tuple",
        lambda t: _write(t, PROTO + EMPTY_TUPLE + TUPLE1 * 200_000 + STOP),
        "nest deeper",
    ),
    (
        "stride-0-view-of-one-float",
        lambda t: _write(
            t, state_dict(w=tensor("0", 1, size=(20000, 20000), stride=(0, 0))), {"0": FOUR[:4]}
        ),
        "elements",
    ),
    (
        "size-2**70",
        lambda t: _write(t, state_dict(w=tensor("0", 4, size=(2**70,), stride=(1,)))),
        "tensor size",
    ),
    ("storage-is-an-int", lambda t: _write(t, state_dict(w=tensor(store=i(7)))), "storage is"),
    (
        "encrypted-member",
        lambda t: patch_headers(_write(t, state_dict(w=tensor())), flags=1),
        "encrypted",
    ),
    (
        "deflate64-member",
        lambda t: patch_headers(_write(t, state_dict(w=tensor())), method=9),
        "deflate64",
    ),
    ("zip-bomb-member", _bomb, "inflate"),
    ("member-lying-about-its-size", _lying_size, "corrupt"),
    # the class around them
    (
        "dag-of-tuples-as-value",
        lambda t: _write(t, PROTO + EMPTY_DICT + s("w") + memo_dag(60) + SETITEM + STOP),
        "nest deeper",
    ),
    (
        "cyclic-list",
        lambda t: _write(t, PROTO + EMPTY_LIST + put(0) + get(0) + APPEND + STOP),
        "cycle",
    ),
    (
        "memo-index-4e9",
        lambda t: _write(t, PROTO + EMPTY_DICT + b"r\xf0\xff\xff\xff" + STOP),
        "memo index",
    ),
    ("memo-read-before-stored", lambda t: _write(t, PROTO + get(5) + STOP), "memo index"),
    (
        "os-system-global",
        lambda t: _write(t, PROTO + glob("os", "system") + tup(s("echo hi")) + REDUCE + STOP),
        "os.system",
    ),
    (
        "builtins-eval-by-stack-global",
        lambda t: _write(t, b"\x80\x04" + b"\x8c\x08builtins\x8c\x04eval\x93" + STOP),
        "builtins.eval",
    ),
    (
        "newobj-opcode",
        lambda t: _write(
            t, PROTO + glob("collections", "OrderedDict") + EMPTY_TUPLE + b"\x81" + STOP
        ),
        "NEWOBJ",
    ),
    (
        "inst-opcode",
        lambda t: _write(t, PROTO + MARK + b"icollections\nOrderedDict\n" + STOP),
        "INST",
    ),
    (
        "negative-stride",
        lambda t: _write(t, state_dict(w=tensor("0", 4, size=(4,), stride=(-1,)))),
        "stride",
    ),
    ("negative-offset", lambda t: _write(t, state_dict(w=tensor("0", 4, offset=-3))), "offset"),
    (
        "view-past-the-storage",
        lambda t: _write(t, state_dict(w=tensor("0", 4, size=(4,), stride=(2,)))),
        "reaching element",
    ),
    (
        "storage-longer-than-member",
        lambda t: _write(t, state_dict(w=tensor("0", 1 << 30, size=(4,)))),
        "bytes for",
    ),
    ("storage-missing", lambda t: _write(t, state_dict(w=tensor("9", 4)), {}), "missing storage"),
    (
        "storage-key-path",
        lambda t: _write(t, state_dict(w=tensor(store=storage("../../x", 4)))),
        "storage key",
    ),
    (
        "storage-length-2**80",
        lambda t: _write(t, state_dict(w=tensor(store=storage("0", 2**80)))),
        "storage length",
    ),
    (
        "1000-dims",
        lambda t: _write(t, state_dict(w=tensor("0", 4, size=(1,) * 1000, stride=(1,) * 1000))),
        "sizes",
    ),
    (
        "many-views-of-one-storage",
        lambda t: _write(t, _shared_storage_views(600), {"0": bytes(4 << 20)}),
        "copying",
    ),
    (
        "size-not-a-tuple",
        lambda t: _write(t, state_dict(w=tensor("0", 4, size=(4,)).replace(ints((4,)), i(4), 1))),
        "size",
    ),
    ("truncated-pickle", lambda t: _write(t, state_dict(w=tensor())[:-7]), "corrupt"),
    (
        "set-member-tuple",
        lambda t: _write(t, b"\x80\x04" + b"\x8f" + MARK + memo_dag(40) + b"\x90" + STOP),
        "set member",
    ),
    (
        "no-state-dict",
        lambda t: _write(t, PROTO + EMPTY_DICT + s("k") + i(3) + SETITEM + STOP),
        "no state dict",
    ),
    (
        "random-bytes",
        lambda t: _file(t / "r.pth", np.random.default_rng(0).bytes(5000)),
        "zip",
    ),
    ("empty-file", lambda t: _file(t / "e.pth", b""), "zip"),
    ("not-a-file", lambda t: t, "does not exist"),
    ("two-pickles", lambda t: _two_pickles(t), "expected 1"),
    (
        "legacy-pre-1.6-format",
        lambda t: _file(t / "old.pth", PROTO + i(0x1950A86A20F9469CFC6C) + b"." + bytes(100)),
        "torch.save(torch.load(",
    ),
]


def _file(path, data):
    path.write_bytes(data)
    return path


def _two_pickles(t):
    path = _write(t, state_dict(w=tensor()))
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("other/data.pkl", state_dict(w=tensor()))
    return path


@pytest.mark.parametrize("build,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_checkpoint_is_refused_in_bounded_time_and_memory(tmp_path, build, words):
    path = build(tmp_path)
    result = run_limited(path)
    assert result.get("error") == "ModelFileError", result
    assert words in result["message"], result["message"]
    assert "Fix:" in result["message"] or "Download" in result["message"]


@pytest.mark.parametrize("name", ["global_basic", "local", "discriminator"])
def test_fixture_checkpoints_still_load_under_limits(name):
    from pathlib import Path

    path = Path(__file__).parent / "fixtures" / f"{name}.pth"
    result = run_limited(path)
    assert "ok" in result and len(result["ok"]) >= 20


def test_deflated_rezipped_checkpoint_still_loads(tmp_path):
    path = checkpoint(
        tmp_path / "z.pth",
        state_dict(w=tensor("0", 4)),
        {"0": FOUR},
        compression=zipfile.ZIP_DEFLATED,
    )
    assert run_limited(path) == {"ok": {"w": [4]}}


def test_legacy_message_says_how_to_resave(tmp_path):
    from vsgan.errors import ModelFileError
    from vsgan.zoo.torch_checkpoint import load_torch_state_dict

    path = tmp_path / "latest_net_G.pth"
    path.write_bytes(PROTO + i(0x1950A86A20F9469CFC6C) + b"." + zlib.compress(bytes(10)))
    with pytest.raises(ModelFileError, match=r"pre-1.6.*torch.save\(torch.load\(") as info:
        load_torch_state_dict(path)
    assert "download" not in str(info.value).lower()
