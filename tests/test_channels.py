"""Channels matched by name: natural order, numbers by value, one-to-one or an error."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from tests.conftest import TINY
from vsgan.errors import InputError
from vsgan.io.channels import ChannelMatchError, channel_key, match_channels, natural_sorted

BF = ["bf_minus10um", "bf_focus", "bf_plus10um"]


def test_natural_order_numbers_by_value_case_and_punctuation():
    assert natural_sorted(["phase_z10", "phase_z2", "phase_z5"]) == [
        "phase_z2",
        "phase_z5",
        "phase_z10",
    ]
    assert channel_key("Phase-Z0.tif") == channel_key("phase_z00")
    isl = [f"phase_contrast_z{i:02d}" for i in range(13)]
    files = [f"phase_z{i}.png" for i in (10, 11, 12, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)] + ["dapi.png"]
    idx = match_channels(isl, files)
    assert [files[i] for i in idx] == [f"phase_z{i}.png" for i in range(13)]


def test_folder_names_with_a_field_prefix_and_extra_targets():
    files = ["w1_dapi.tif", "w1_bf_plus10um.tif", "w1_bf_focus.tif", "w1_bf_minus10um.tif"]
    assert [files[i] for i in match_channels(BF, files)] == [
        "w1_bf_minus10um.tif",
        "w1_bf_focus.tif",
        "w1_bf_plus10um.tif",
    ]


def test_unmatched_names_raise_listing_both_sides():
    with pytest.raises(ChannelMatchError, match=r"cell1.*brightfield.*Fix:"):
        match_channels(["brightfield", "darkfield"], ["cell1.tif", "cell2.tif"])
    with pytest.raises(ChannelMatchError):  # a file list must be used whole
        match_channels(BF, [*BF, "dapi"], exact=True)
    with pytest.raises(ChannelMatchError):  # z0 and z00 are the same plane: ambiguous
        match_channels(["z0", "z1"], ["z0", "z00", "z1"])


class _Model:
    """What read_fields and stain's name matching need of a model."""

    def __init__(self, names):
        self.input_channels = list(names)
        self.in_channels = len(names)


def _planes(folder, names, rng, size=(16, 20)):
    folder.mkdir(parents=True, exist_ok=True)
    planes = {}
    for name in names:
        planes[name] = rng.integers(0, 255, size, dtype=np.uint8)
        tifffile.imwrite(folder / f"{name}.tif", planes[name])
    return planes


def test_read_fields_stacks_planes_by_name_not_text_order(tmp_path):
    from vsgan.inference.stain import read_fields

    rng = np.random.default_rng(0)
    names = ["phase_z2", "phase_z5", "phase_z10"]
    planes = _planes(tmp_path / "data" / "well1", [*names, "dapi"], rng)
    _planes(tmp_path / "data" / "well2", [*names, "dapi"], rng)
    fields = read_fields([str(tmp_path / "data")], _Model(names))
    assert [n for n, _ in fields] == ["well1", "well2"]
    np.testing.assert_array_equal(fields[0][1], np.stack([planes[n] for n in names], -1))
    # Files given one by one, in text order: still z2, z5, z10.
    files = sorted(str(p) for p in (tmp_path / "data" / "well1").glob("phase_*.tif"))
    ((name, raw),) = read_fields(files, _Model(names))
    np.testing.assert_array_equal(raw, np.stack([planes[n] for n in names], -1))


def test_two_single_channel_cells_are_not_fused_into_one_field(tmp_path):
    from vsgan.inference.stain import read_fields

    rng = np.random.default_rng(0)
    _planes(tmp_path, ["cell1", "cell2"], rng, size=(40, 40))
    with pytest.raises(InputError, match="brightfield"):
        read_fields([str(tmp_path / "cell1.tif"), str(tmp_path / "cell2.tif")],
                    _Model(["brightfield", "darkfield"]))  # fmt: skip


def test_stacked_files_need_channel_names(tmp_path):
    from vsgan.inference.stain import read_fields

    stack = np.arange(3 * 8 * 10, dtype=np.uint16).reshape(3, 8, 10)
    order = ["bf_plus10um", "bf_focus", "bf_minus10um"]
    tifffile.imwrite(tmp_path / "named.ome.tif", stack,
                     metadata={"axes": "CYX", "Channel": {"Name": order}})  # fmt: skip
    ((_, raw),) = read_fields([str(tmp_path / "named.ome.tif")], _Model(BF))
    np.testing.assert_array_equal(raw, np.moveaxis(stack[::-1], 0, -1))
    tifffile.imwrite(tmp_path / "plain.tif", stack)
    with pytest.raises(InputError, match="--channels"):
        read_fields([str(tmp_path / "plain.tif")], _Model(BF))
    ((_, raw),) = read_fields([str(tmp_path / "plain.tif")], _Model(BF), channels=order)
    np.testing.assert_array_equal(raw, np.moveaxis(stack[::-1], 0, -1))


def test_stain_takes_a_dict_by_channel_name():
    from vsgan import Pix2PixHD
    from vsgan.inference.stain import stain

    model = Pix2PixHD(3, 1, input_channels=BF, **TINY)
    rng = np.random.default_rng(0)
    planes = {n: rng.random((32, 32)).astype("float32") for n in BF}
    stacked = stain(model, np.stack([planes[n] for n in BF], -1)).mean
    by_name = stain(model, {"BF_Focus": planes["bf_focus"], "bf-plus10um": planes["bf_plus10um"],
                            "bf_minus10um": planes["bf_minus10um"]}).mean  # fmt: skip
    np.testing.assert_allclose(by_name, stacked, atol=1e-6)
    with pytest.raises(ChannelMatchError, match="bf_focus"):
        stain(model, {"a": planes["bf_focus"], "b": planes["bf_focus"], "c": planes["bf_focus"]})
