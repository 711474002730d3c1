"""pix2pixHD checkpoint import: safe torch-free reading, weight mapping parity, the A549 path.

The fixtures in `tests/fixtures/` were written by `tools/make_torch_fixture.py`, an
independent PyTorch implementation of pix2pixHD, with seeded random weights: a checkpoint,
a fixed input and torch's output per network (NCHW).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import vsgan
from vsgan.errors import ModelFileError
from vsgan.zoo import (
    a549,
    from_pix2pixhd,
    infer_discriminator_config,
    infer_generator_config,
    load_generator_weights,
    load_torch_state_dict,
)
from vsgan.zoo.a549 import A549_MEMBERS, A549_URL, load_a549
from vsgan.zoo.pix2pixhd import OutputExistsError, convert_checkpoint

FIXTURES = Path(__file__).parent / "fixtures"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
GENERATORS = ["global_basic", "global_dropout", "global_in2", "local"]
TINY = {"ngf": 4, "n_downsample": 2, "n_blocks": 2}  # global_basic / global_dropout
SMALL_D = {"ndf": 4, "num_d": 1}  # the discriminator is not under test: keep it cheap
TOLERANCE = 1e-4


def nhwc(name: str) -> np.ndarray:
    return np.load(FIXTURES / f"{name}_input.npy").transpose(0, 2, 3, 1)


def torch_output(name: str) -> np.ndarray:
    return np.load(FIXTURES / f"{name}_output.npy").transpose(0, 2, 3, 1)


def max_error(model: keras.Model, name: str) -> float:
    return float(np.abs(np.asarray(model(nhwc(name))) - torch_output(name)).max())


# ------------------------------------------------------------------ torch zip files by hand
class _Pickle:
    """Writes protocol-2 pickle opcodes directly: torch's names without importing torch."""

    def __init__(self):
        self.out = bytearray(b"\x80\x02")

    def global_(self, module: str, name: str):
        self.out += b"c" + f"{module}\n{name}\n".encode()

    def str_(self, s: str):
        data = s.encode()
        self.out += b"X" + struct.pack("<I", len(data)) + data

    def int_(self, i: int):
        self.out += b"J" + struct.pack("<i", i)

    def ints(self, values):
        self.out += b"("
        for v in values:
            self.int_(v)
        self.out += b"t"

    def tensor(self, storage: str, key: str, numel: int, offset: int, size, stride):
        self.global_("torch._utils", "_rebuild_tensor_v2")
        self.out += b"(("  # args tuple, then the persistent id tuple
        self.str_("storage")
        self.global_("torch", storage)
        self.str_(key)
        self.str_("cpu")
        self.int_(numel)
        self.out += b"tQ"
        self.int_(offset)
        self.ints(size)
        self.ints(stride)
        self.out += b"\x89"  # requires_grad=False
        self.global_("collections", "OrderedDict")
        self.out += b")Rt"  # backward_hooks=OrderedDict(); close the args
        self.out += b"R"

    def dict_(self, items):
        """items: (key, writer) pairs; writer() emits the value."""
        self.out += b"}("
        for key, write in items:
            self.str_(key)
            write()
        self.out += b"u"

    def bytes(self) -> bytes:
        return bytes(self.out) + b"."


def write_checkpoint(path: Path, pickled: bytes, storages: dict[str, bytes], root="archive"):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{root}/data.pkl", pickled)
        zf.writestr(f"{root}/byteorder", "little")
        for key, raw in storages.items():
            zf.writestr(f"{root}/data/{key}", raw)
    return path


def test_fixture_checkpoint_reads_as_numpy():
    state = load_torch_state_dict(FIXTURES / "global_dropout.pth")
    # The dropout placeholder shifts the second block conv to index 6.
    assert "model.10.conv_block.6.weight" in state
    assert state["model.1.weight"].shape == (4, 1, 7, 7)
    assert state["model.1.weight"].dtype == np.float32
    assert all(isinstance(v, np.ndarray) for v in state.values())


def test_strides_offsets_dtypes_nesting_and_module_prefix(tmp_path):
    base = np.arange(24, dtype=np.float32)
    half = np.array([1.5, -2.0, 3.25], np.float16)
    longs = np.arange(10, dtype=np.int64)
    bf16 = np.array([1.0, -2.5, 32768.0], np.float32)
    bf16_bits = (bf16.view(np.uint32) >> 16).astype("<u2")  # these values are exact in bf16
    p = _Pickle()

    def state():
        p.dict_(
            [
                # A transposed view: size (4, 6), stride (1, 4), from element 0.
                ("module.t", lambda: p.tensor("FloatStorage", "0", 24, 0, (4, 6), (1, 4))),
                ("module.h", lambda: p.tensor("HalfStorage", "1", 3, 0, (3,), (1,))),
                # Offset 3, size 4: elements 3..6 of a shared storage.
                ("module.l", lambda: p.tensor("LongStorage", "2", 10, 3, (4,), (1,))),
                ("module.b", lambda: p.tensor("BFloat16Storage", "3", 3, 0, (3,), (1,))),
            ]
        )

    p.dict_([("epoch", lambda: p.int_(7)), ("state_dict", state)])
    storages = {
        "0": base.tobytes(),
        "1": half.astype("<f2").tobytes(),
        "2": longs.astype("<i8").tobytes(),
        "3": bf16_bits.tobytes(),
    }
    loaded = load_torch_state_dict(write_checkpoint(tmp_path / "c.pth", p.bytes(), storages))
    assert list(loaded) == ["t", "h", "l", "b"]
    np.testing.assert_array_equal(loaded["t"], base.reshape(6, 4).T)
    assert loaded["t"].flags.c_contiguous and loaded["t"].flags.writeable
    np.testing.assert_array_equal(loaded["h"], half)
    np.testing.assert_array_equal(loaded["l"], [3, 4, 5, 6])
    assert loaded["l"].dtype == np.int64
    np.testing.assert_array_equal(loaded["b"], bf16)


def test_out_of_bounds_stride_is_refused(tmp_path):
    # A crafted size/stride must not make as_strided read past the buffer.
    p = _Pickle()
    p.dict_([("w", lambda: p.tensor("FloatStorage", "0", 4, 2, (4,), (1,)))])
    path = write_checkpoint(tmp_path / "c.pth", p.bytes(), {"0": np.zeros(4, "<f4").tobytes()})
    with pytest.raises(ModelFileError, match="corrupt"):
        load_torch_state_dict(path)


class _WritesFile:
    """Unpickled normally, this creates a file: proof the payload is live."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _RunsShell:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("payload", [_WritesFile, _RunsShell])
def test_code_running_pickle_is_refused_and_runs_nothing(tmp_path, payload):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"model.1.weight": payload(marker)}, protocol=2)
    if payload is _WritesFile:  # show that plain pickle would indeed run it
        pickle.loads(evil).popitem()[1].close()
        assert marker.exists()
        marker.unlink()
    path = write_checkpoint(tmp_path / "evil.pth", evil, {})
    with pytest.raises(ModelFileError, match="not a plain PyTorch state dict") as info:
        load_torch_state_dict(path)
    assert ("open" if payload is _WritesFile else "system") in str(info.value)
    assert not marker.exists()


def test_non_tensor_classes_are_refused(tmp_path):
    p = _Pickle()
    p.global_("torch.nn.modules.linear", "Linear")
    p.out += b")R"
    with pytest.raises(ModelFileError, match="torch.nn.modules.linear.Linear"):
        load_torch_state_dict(write_checkpoint(tmp_path / "m.pth", p.bytes(), {}))


def _truncated(tmp_path):
    raw = (FIXTURES / "global_basic.pth").read_bytes()
    (tmp_path / "t.pth").write_bytes(raw[: len(raw) // 2])
    return tmp_path / "t.pth"


def _not_zip(tmp_path):
    (tmp_path / "n.pth").write_bytes(b"this is not a checkpoint" * 10)
    return tmp_path / "n.pth"


def _legacy(tmp_path):
    (tmp_path / "l.pth").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    return tmp_path / "l.pth"


def _zip_without_pickle(tmp_path):
    with zipfile.ZipFile(tmp_path / "z.pth", "w") as zf:
        zf.writestr("readme.txt", "hello")
    return tmp_path / "z.pth"


def _missing_storage(tmp_path):
    p = _Pickle()
    p.dict_([("w", lambda: p.tensor("FloatStorage", "0", 4, 0, (4,), (1,)))])
    return write_checkpoint(tmp_path / "s.pth", p.bytes(), {})


def _no_tensors(tmp_path):
    p = _Pickle()
    p.dict_([("epoch", lambda: p.int_(3))])
    return write_checkpoint(tmp_path / "e.pth", p.bytes(), {})


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda tmp: tmp / "absent.pth", "does not exist"),
        (_truncated, "truncated"),
        (_not_zip, "not a complete zip"),
        (_legacy, "legacy"),
        (_zip_without_pickle, "not a PyTorch checkpoint"),
        (_missing_storage, "missing storage"),
        (_no_tensors, "holds no state dict"),
    ],
)
def test_bad_files_raise_model_file_error_with_the_fix(tmp_path, make, expected):
    with pytest.raises(ModelFileError, match=expected):
        load_torch_state_dict(make(tmp_path))


# ------------------------------------------------------------------------- weight mapping
@pytest.mark.parametrize("name", GENERATORS)
def test_generator_parity_with_torch(name):
    model = from_pix2pixhd(FIXTURES / f"{name}.pth", **SMALL_D)
    error = max_error(model, name)
    print(f"{name}: max abs error vs torch {error:.2e}")
    assert error < TOLERANCE


@pytest.mark.parametrize("name", GENERATORS)
def test_architecture_is_read_from_the_weights(name):
    spec = MANIFEST[name]
    config = infer_generator_config(load_torch_state_dict(FIXTURES / f"{name}.pth"))
    assert config["in_channels"] == spec["in_ch"]
    assert config["out_channels"] == spec["out_ch"]
    assert config["ngf"] == spec["ngf"]
    assert config["n_downsample"] == spec["n_down"]
    assert config["n_blocks"] == spec["n_blocks"]
    assert config["n_local_enhancers"] == (1 if spec["kind"] == "local" else 0)
    if spec["kind"] == "local":
        assert config["n_blocks_local"] == spec["n_blocks_local"]


def test_dropout_checkpoint_loads_into_a_dropout_model():
    # Indices shifted by the dropout slot; dropout is inactive outside training.
    model = from_pix2pixhd(FIXTURES / "global_dropout.pth", dropout=0.5, **SMALL_D)
    assert max_error(model, "global_dropout") < TOLERANCE
    x = nhwc("global_dropout")
    assert not np.allclose(model.generator(x, training=True), model.generator(x))


def test_explicit_config_and_every_kernel_assigned():
    model = from_pix2pixhd(FIXTURES / "global_basic.pth", in_channels=1, **TINY, **SMALL_D)
    state = load_torch_state_dict(FIXTURES / "global_basic.pth")
    kernels = [v for v in model.generator.weights if v.path.endswith("kernel")]
    assert len(kernels) == sum(k.endswith(".weight") for k in state)
    # The output conv's bias is the one bias instance norm does not cancel: check it directly.
    out_bias = model.generator.get_layer("conv_out_conv").bias
    np.testing.assert_array_equal(np.asarray(out_bias), state["model.19.bias"])


def test_discriminator_parity_with_torch():
    model = from_pix2pixhd(
        FIXTURES / "global_basic.pth", discriminator=FIXTURES / "discriminator.pth"
    )
    spec = MANIFEST["discriminator"]
    assert (model.ndf, model.num_d, model.n_layers_d) == (
        spec["ndf"],
        spec["num_d"],
        spec["n_layers"],
    )
    x = np.load(FIXTURES / "discriminator_input.npy").transpose(0, 2, 3, 1)
    reference = np.load(FIXTURES / "discriminator_outputs.npz")
    outputs = model.discriminator(x)
    assert len(outputs) == spec["num_d"]
    for i, scale in enumerate(outputs):
        assert len(scale) == spec["n_layers"] + 2
        for j, feature in enumerate(scale):
            expected = reference[f"scale{i}_layer{j}"].transpose(0, 2, 3, 1)
            np.testing.assert_allclose(np.asarray(feature), expected, atol=TOLERANCE, rtol=0)


def test_discriminator_config_is_read_from_the_weights():
    state = load_torch_state_dict(FIXTURES / "discriminator.pth")
    assert infer_discriminator_config(state) == {"ndf": 4, "num_d": 2, "n_layers_d": 3}


def test_wrong_architecture_names_the_mismatched_shapes():
    with pytest.raises(
        ModelFileError, match=r"'model\.1\.weight' is \(4, 1, 7, 7\).*\(8, 1, 7, 7\)"
    ):
        from_pix2pixhd(FIXTURES / "global_basic.pth", ngf=8, **SMALL_D)
    with pytest.raises(ModelFileError, match="has 10 convolutions, the Keras generator 8"):
        from_pix2pixhd(FIXTURES / "global_basic.pth", n_blocks=1, **SMALL_D)


def test_alphabetically_sorted_keys_still_map_by_layer_order():
    # "model.10" < "model.4" as strings: order must come from the module structure.
    state = load_torch_state_dict(FIXTURES / "local.pth")
    shuffled = dict(sorted(state.items(), reverse=True))
    model = vsgan.Pix2PixHD(
        1, 1, ngf=2, n_downsample=2, n_blocks=1, n_local_enhancers=1, n_blocks_local=2, **SMALL_D
    )
    load_generator_weights(model.generator, shuffled)
    assert max_error(model, "local") < TOLERANCE


def test_unused_and_missing_weights_are_refused():
    state = load_torch_state_dict(FIXTURES / "global_basic.pth")
    generator = vsgan.GlobalGenerator(1, 1, **TINY)
    extra = {**state, "model.2.weight": np.ones(4, np.float32)}  # an affine norm vsgan lacks
    with pytest.raises(ModelFileError, match=r"no place for: model\.2\.weight"):
        load_generator_weights(generator, extra)
    missing = {k: v for k, v in state.items() if not k.startswith("model.19.")}
    with pytest.raises(ModelFileError, match="has 9 convolutions"):
        load_generator_weights(generator, missing)


def test_local_enhancer_checkpoint_does_not_load_as_global():
    state = load_torch_state_dict(FIXTURES / "local.pth")
    with pytest.raises(ModelFileError, match="does not fit"):
        load_generator_weights(
            vsgan.GlobalGenerator(1, 1, ngf=4, n_downsample=2, n_blocks=1), state
        )


def test_one_checkpoint_per_channel_stacks_into_a_split_stainer():
    paths = [FIXTURES / "global_basic.pth", FIXTURES / "global_dropout.pth"]
    model = from_pix2pixhd(paths, **SMALL_D)
    assert model.split_outputs and model.out_channels == 2
    for channel, name in enumerate(["global_basic", "global_dropout"]):
        y = np.asarray(model(nhwc(name)))[..., channel]
        assert np.abs(y - torch_output(name)[..., 0]).max() < TOLERANCE
    with pytest.raises(ModelFileError, match="single-output"):
        from_pix2pixhd([FIXTURES / "global_in2.pth"] * 2, **SMALL_D)


def test_convert_checkpoint_writes_atomically_and_refuses_overwrite(tmp_path):
    out = tmp_path / "g.keras"
    assert convert_checkpoint(FIXTURES / "global_basic.pth", out, **SMALL_D) == out
    assert [p.name for p in tmp_path.iterdir()] == ["g.keras"]  # no temporary left behind
    reloaded = keras.models.load_model(out)
    assert max_error(reloaded, "global_basic") < TOLERANCE
    before = out.read_bytes()
    with pytest.raises(OutputExistsError, match="overwrite=True") as info:
        convert_checkpoint(FIXTURES / "global_dropout.pth", out, **SMALL_D)
    assert isinstance(info.value, FileExistsError)
    assert out.read_bytes() == before
    convert_checkpoint(FIXTURES / "global_dropout.pth", out, overwrite=True, **SMALL_D)
    assert max_error(keras.models.load_model(out), "global_dropout") < TOLERANCE


def test_failed_conversion_leaves_no_output(tmp_path):
    with pytest.raises(ModelFileError):
        convert_checkpoint(FIXTURES / "global_basic.pth", tmp_path / "g.keras", ngf=8)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------- A549
def build_a549_archive(path: Path) -> Path:
    """A small archive with the layout of the seed's dlmbl_requisites.zip."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(FIXTURES / "global_basic.pth", A549_MEMBERS["nuclei"])
        zf.write(FIXTURES / "global_dropout.pth", A549_MEMBERS["membrane"])
        zf.writestr("dlmbl_vsnuclei/dlmbl_vsnuclei/latest_net_D.pth", b"not read")
        zf.writestr("dlmbl_vscyto/dlmbl_vscyto/logs/events.out.tfevents.0", b"")
    return path


def check_a549(model):
    assert isinstance(model, vsgan.Pix2PixHD)
    assert model.input_channels == ["phase"]
    assert model.output_channels == ["nuclei", "membrane"]
    assert model.split_outputs
    target = model.preprocessor.get_config()["target"]
    assert target["method"] == "fixed"
    assert target["offset"] == [2200.0, 9186.0] and target["scale"] == [2200.0, 9186.0]
    assert model.preprocessor.get_config()["input"]["method"] == "identity"
    for channel, name in enumerate(["global_basic", "global_dropout"]):
        y = np.asarray(model(nhwc(name)))[..., channel]
        assert np.abs(y - torch_output(name)[..., 0]).max() < TOLERANCE


def test_a549_converts_a_local_archive_then_loads_from_the_cache(tmp_path, monkeypatch):
    archive = build_a549_archive(tmp_path / "dlmbl_requisites.zip")
    cache = tmp_path / "cache"
    check_a549(load_a549(archive=archive, cache_dir=cache, config=TINY))
    cached = list(cache.glob("*.keras"))
    assert len(cached) == 1

    # Second call: no archive, no network; the cached .keras is used.
    archive.unlink()
    monkeypatch.setattr(a549, "_download", lambda _: pytest.fail("tried to download"))
    check_a549(load_a549(cache_dir=cache, config=TINY))


def test_a549_finds_the_archive_in_the_cache_dir(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    build_a549_archive(cache / "dlmbl_requisites.zip")
    check_a549(load_a549(cache_dir=cache, config=TINY))


def test_a549_warns_when_the_weights_differ_from_the_documented_model(tmp_path):
    archive = build_a549_archive(tmp_path / "a.zip")
    with pytest.warns(UserWarning, match="differ from the documented architecture"):
        model = load_a549(archive=archive, cache_dir=tmp_path / "cache")
    assert model.ngf == 4


def test_a549_offline_error_says_what_to_download_and_where(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    cache = tmp_path / "cache"
    with pytest.raises(ModelFileError) as info:
        load_a549(cache_dir=cache)
    message = str(info.value)
    assert A549_URL in message
    assert str(cache / "dlmbl_requisites.zip") in message
    assert "archive=" in message


def test_a549_default_cache_is_the_keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert a549.default_cache_dir() == tmp_path / "vsgan"


@pytest.mark.parametrize("damage", ["missing_member", "not_zip"])
def test_a549_wrong_or_damaged_archive(tmp_path, damage):
    archive = tmp_path / "dlmbl_requisites.zip"
    if damage == "missing_member":
        with zipfile.ZipFile(archive, "w") as zf:
            zf.write(FIXTURES / "global_basic.pth", A549_MEMBERS["nuclei"])
        expected = "dlmbl_vscyto/dlmbl_vscyto/latest_net_G.pth"
    else:
        shutil.copy(FIXTURES / "global_basic_input.npy", archive)
        expected = "not a readable zip"
    with pytest.raises(ModelFileError, match=expected) as info:
        load_a549(archive=archive, cache_dir=tmp_path / "cache", config=TINY)
    assert A549_URL in str(info.value)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.keras"))
