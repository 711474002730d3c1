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
