"""Conversion of checkpoints that are not what they claim (issue 14, classes 1 and 6): the
implied architecture is bounded before any layer is allocated, and each kind of mismatch
(batch norm, encoder, discriminator, incomplete discriminator) gets its own message."""

import os
import resource
import stat
import time
from pathlib import Path

import numpy as np
import pytest
from hostile import write_state_dict

from vsgan.errors import ModelFileError
from vsgan.zoo.pix2pixhd import convert_checkpoint, from_pix2pixhd

FIXTURES = Path(__file__).parent / "fixtures"
SMALL_D = dict(ndf=8, num_d=2, n_layers_d=3)


def _w(*shape):
    return np.zeros(shape, np.float32)


def _huge_ngf(tmp):
    """One real-sized head (ngf 4096) and a 1x1 block: implies 300 M weights, stores 0.2 M."""
    arrays = {
        "model.1.weight": _w(4096, 1, 7, 7),
        "model.2.conv_block.1.weight": _w(1, 1, 1, 1),
        "model.3.weight": _w(1, 1, 1, 1),
    }
    return write_state_dict(tmp / "g.pth", arrays), {}


def _batch_norm(tmp):
    arrays = {"model.1.weight": _w(8, 1, 7, 7), "model.2.weight": _w(8)}
    arrays.update({"model.2.running_mean": _w(8), "model.2.running_var": _w(8)})
    return write_state_dict(tmp / "g.pth", arrays), {}


def _encoder(tmp):
    """pix2pixHD's Encoder: 7x7 in, down, up, 7x7 out, no residual blocks."""
    arrays = {
        "model.1.weight": _w(16, 3, 7, 7),
        "model.4.weight": _w(32, 16, 3, 3),
        "model.7.weight": _w(32, 16, 3, 3),
        "model.11.weight": _w(3, 16, 7, 7),
    }
    return write_state_dict(tmp / "latest_net_E.pth", arrays), {}


def _d_as_g(tmp):
    return FIXTURES / "discriminator.pth", {}


def _g_as_d(tmp):
    return FIXTURES / "global_basic.pth", {"discriminator": str(FIXTURES / "global_basic.pth")}


def _d_without_scale0(tmp):
    arrays = {f"scale1_layer{j}.0.weight": _w(8, 3, 4, 4) for j in range(5)}
    path = write_state_dict(tmp / "d.pth", arrays)
    return FIXTURES / "global_basic.pth", {"discriminator": str(path)}


def _d_without_feat(tmp):
    arrays = {f"layer0.{j}.weight": _w(8, 3, 4, 4) for j in (0, 2)}
    path = write_state_dict(tmp / "d.pth", arrays)
    return FIXTURES / "global_basic.pth", {"discriminator": str(path)}


def _d_wrong_shape(tmp):
    return FIXTURES / "global_basic.pth", {
        "discriminator": str(FIXTURES / "discriminator.pth"),
        "in_channels": 1,
        "ndf": 16,
    }


def _config_ngf_2_40(tmp):
    return FIXTURES / "global_basic.pth", {"ngf": 2**40}


def _config_ngf_string(tmp):
    return FIXTURES / "global_basic.pth", {"ngf": "64"}


CASES = [
    ("generator-implying-ngf-4096", _huge_ngf, "implies a model of|outside"),
    ("batch-norm-generator", _batch_norm, "batch normalisation"),
    ("encoder-latest_net_E", _encoder, "feature encoder"),
    ("discriminator-given-as-generator", _d_as_g, "is a pix2pixHD discriminator"),
    ("generator-given-as-discriminator", _g_as_d, "not a discriminator"),
    ("discriminator-without-scale0", _d_without_scale0, "scale0_layer0"),
    ("discriminator-without-feature-layers", _d_without_feat, "no_ganFeat_loss"),
    ("discriminator-of-another-config", _d_wrong_shape, "ndf, num_d, n_layers_d"),
    ("config-ngf-2**40", _config_ngf_2_40, "outside"),
    ("config-ngf-a-string", _config_ngf_string, "whole number"),
]


@pytest.mark.parametrize("build,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_mismatched_checkpoint_gets_its_own_message_fast(tmp_path, build, words):
    path, kwargs = build(tmp_path)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match=words) as info:
        from_pix2pixhd(path, **{**SMALL_D, **kwargs})
    assert "Fix:" in str(info.value)
    # Refused before any large allocation: the peak grew by less than 300 MB, in seconds.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 300_000
    assert time.perf_counter() - start < 60


def test_converted_keras_file_gets_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        out = convert_checkpoint(FIXTURES / "global_basic.pth", tmp_path / "g.keras", **SMALL_D)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


# ----------------------------------------------------------------------------- a549
def _swapped_archive(path):
    import zipfile

    from vsgan.zoo.a549 import A549_MEMBERS

    with zipfile.ZipFile(path, "w") as zf:
        zf.write(FIXTURES / "global_dropout.pth", A549_MEMBERS["nuclei"])
        zf.write(FIXTURES / "global_basic.pth", A549_MEMBERS["membrane"])
    return path


def test_a549_cache_is_keyed_by_the_archive(tmp_path):
    from test_zoo_pix2pixhd import TINY, build_a549_archive

    from vsgan.zoo.a549 import load_a549

    cache = tmp_path / "cache"
    first = build_a549_archive(tmp_path / "first.zip")
    second = _swapped_archive(tmp_path / "second.zip")
    x = np.random.default_rng(0).random((1, 16, 16, 1)).astype(np.float32)
    a = np.asarray(load_a549(archive=first, cache_dir=cache, config=TINY)(x))
    b = np.asarray(load_a549(archive=second, cache_dir=cache, config=TINY)(x))
    np.testing.assert_allclose(a[..., 0], b[..., 1], atol=1e-5)  # swapped, not the first
    assert not np.allclose(a, b)
    assert len(list(cache.glob("a549-*.keras"))) == 2
    again = np.asarray(load_a549(archive=first, cache_dir=cache, config=TINY)(x))
    np.testing.assert_array_equal(a, again)


def test_a549_truncated_cache_is_converted_again_or_refused(tmp_path, monkeypatch):
    import keras
    from test_zoo_pix2pixhd import TINY, build_a549_archive

    from vsgan.zoo.a549 import load_a549

    cache = tmp_path / "cache"
    archive = build_a549_archive(tmp_path / "a.zip")
    load_a549(archive=archive, cache_dir=cache, config=TINY)
    (cached,) = cache.glob("a549-*.keras")
    cached.write_bytes(cached.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="damaged"):
        model = load_a549(archive=archive, cache_dir=cache, config=TINY)
    assert model.output_channels == ["nuclei", "membrane"]
    assert cached.stat().st_size > 1000  # rewritten whole

    cached.write_bytes(cached.read_bytes()[:1000])

    def offline(*args, **kwargs):
        raise Exception("no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with (
        pytest.warns(UserWarning, match="damaged"),
        pytest.raises(ModelFileError, match="archive="),
    ):
        load_a549(cache_dir=cache, config=TINY)  # archive gone, cache damaged, offline
