"""Target headroom, the time budget and fine-tuning's channel check (no training runs here)."""

from __future__ import annotations

import numpy as np
import pytest

import vsgan
from vsgan.data.normalize import TARGET_HEADROOM, Normalization, StainPreprocessor


def test_a_target_twice_the_training_high_percentile_is_representable():
    rng = np.random.default_rng(0)
    train = rng.gamma(2.0, 300.0, (1, 128, 128, 1)) + 100
    norm = Normalization("percentile", headroom=TARGET_HEADROOM).fit(train)
    high = np.percentile(train, 99.8)
    bright = np.full((1, 4, 4, 1), 2 * high)
    units = norm.normalize(bright)
    assert units.max() < 0.9  # well inside tanh's (-1, 1): the generator can output it
    pre = StainPreprocessor(target=norm)
    np.testing.assert_allclose(pre.denormalize_target(units), bright, rtol=1e-5)
    assert float(pre.denormalize_target(np.full((1, 1, 1, 1), 0.99)).max()) > 2 * high
    # Without headroom (the older presets' stored normalisation) it saturates.
    old = Normalization("percentile").fit(train)
    assert old.normalize(bright).max() > 1
    assert StainPreprocessor.from_config(pre.get_config()) == pre
    assert "headroom" not in old.get_config()  # configs saved before it compare equal


def test_recipes_fit_targets_with_headroom_and_presets_keep_theirs():
    from vsgan.training.recipes import Recipe, build_spec
    from vsgan.zoo.presets import get_preset

    spec = build_spec(Recipe(dataset="synthetic", dataset_args={"n_fields": 2, "size": 32}))
    assert spec.target_norm.headroom == TARGET_HEADROOM
    for name in ("isl-nuclei", "jurkat-dna"):  # loading never refits: the trained one stays
        preset = get_preset(name)
        stored = preset.config["normalization"]["target"]
        trained = preset.recipe.get("target_headroom", 1.0)  # records before it had none
        assert StainPreprocessor(target=stored).target.headroom == trained
        assert vsgan.load_pretrained(name).preprocessor.target.headroom == trained


def test_time_budget_fits_the_decay_and_stops_at_an_epoch_boundary(monkeypatch):
    import time

    from vsgan.training.callbacks import LinearDecay, TimeBudget, parse_duration

    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])

    class Model:
        stop_training = False

    decay = LinearDecay(500, 500)
    budget = TimeBudget(parse_duration("10m"), decay, max_epochs=1000, verbose=False)
    budget.set_model(Model())
    budget.on_train_begin()
    epoch = 0
    while not budget.model.stop_training:
        budget.on_epoch_begin(epoch)
        clock[0] += 100.0 if epoch else 160.0  # the first epoch also traces
        budget.on_epoch_end(epoch)
        epoch += 1
    assert clock[0] <= 600 and epoch == 5  # 160 + 4 x 100 s
    assert (decay.niter, decay.niter_decay) == (2, 3)
    assert decay.factor(epoch - 1) > 0 and decay.factor(epoch) == 0.0
    # A first step that traces for longer than the rest of the epoch does not end the run.
    clock[0] = 0.0
    again = TimeBudget(600, LinearDecay(500, 500), max_epochs=1000, verbose=False)
    again.set_model(Model())
    again.on_train_begin()
    again.on_epoch_begin(0)
    clock[0] += 400.0  # tracing
    again.on_train_batch_end(0)
    for step in range(1, 10):
        clock[0] += 10.0
        again.on_train_batch_end(step)
    again.on_epoch_end(0)  # 490 s in, 100 s an epoch from here on
    assert again.planned == 2 and not again.model.stop_training
    with pytest.raises(Exception, match="duration"):
        parse_duration("soon")


def test_fine_tuning_refuses_a_model_whose_channels_do_not_match():
    from vsgan.errors import InputError
    from vsgan.training.recipes import Recipe, build_spec, pretrained_start

    recipe = Recipe(dataset="synthetic", dataset_args={"n_fields": 2, "size": 32},
                    init_from="isl-nuclei")  # fmt: skip
    spec = build_spec(recipe)
    with pytest.raises(InputError, match=r"--from isl-nuclei.*phase_contrast_z00.*Fix:"):
        pretrained_start(recipe, spec)


def test_own_data_forms_hdf5_group_zarr_plate_and_one_folder_split_by_region(tmp_path, capsys):
    import h5py
    import tifffile

    from vsgan.io.ome_zarr import write_plate
    from vsgan.training.recipes import Recipe, build_spec

    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "cells.h5", "w") as f:
        for name in ("brightfield", "darkfield", "dna"):
            f[f"imgs/{name}"] = rng.random((6, 40, 40)).astype("float32")
    spec = build_spec(Recipe(dataset=f"{tmp_path / 'cells.h5'}::imgs", patch_size=None,
                             dataset_args={"inputs": ["brightfield", "darkfield"],
                                           "targets": ["dna"]}))  # fmt: skip
    assert (spec.input_names, spec.target_names) == (["brightfield", "darkfield"], ["dna"])
    assert spec.num_fields("val") >= 1 and spec.num_fields("train") >= 1

    plate = tmp_path / "plate.zarr"
    fields = {f"A/1/{i}": rng.random((1, 3, 1, 32, 32)).astype("float32") for i in range(4)}
    write_plate(plate, fields, ["Phase3D", "Nuclei", "Membrane"])
    args = {"inputs": ["Phase3D"], "targets": ["Nuclei"]}
    spec = build_spec(Recipe(dataset=str(plate), patch_size=16, dataset_args=args))
    assert (spec.input_names, spec.target_names) == (["Phase3D"], ["Nuclei"])
    assert spec.num_fields("val") == 1

    field = tmp_path / "one"
    field.mkdir()
    for name in ("bf_z10", "bf_z2", "dapi"):
        tifffile.imwrite(field / f"{name}.tif", rng.integers(0, 255, (96, 128), dtype=np.uint8))
    capsys.readouterr()
    args = {"inputs": ["bf_*.tif"], "targets": ["dapi.tif"]}
    spec = build_spec(Recipe(dataset=str(field), patch_size=32, dataset_args=args))
    assert spec.input_names == ["bf_z2", "bf_z10"]
    (only,) = spec.fields
    assert only.regions["val"] and only.regions["train"]
    assert "validating on rows" in capsys.readouterr().out


def test_a_recipe_sets_the_augmentation_and_keeps_a_snapshot_per_epoch(tmp_path, monkeypatch):
    from conftest import TINY
    from vsgan.data.augment import Augmentation
    from vsgan.errors import InputError
    from vsgan.training.callbacks import average_snapshots
    from vsgan.training.recipes import Recipe, train
    from vsgan.zoo import load_pretrained

    config = {
        "dataset": "synthetic",
        "dataset_args": {"n_fields": 4, "size": 64},
        "model": {**TINY, "num_d": 1},
        "patch_size": 32,
        "steps_per_epoch": 2,
        "epochs": 2,
        "niter": 1,
        "niter_decay": 1,
        "val_batches": 1,
        "precision": "float32",
        "augment": {"rotate_degrees": 30, "scale_range": [0.9, 1.1], "noise_std": 0.0},
        "snapshots": True,
    }
    recipe = Recipe.from_config(config)
    assert recipe.augmentation() == Augmentation(
        rotate_degrees=30, scale_range=(0.9, 1.1), noise_std=0.0
    )
    assert Recipe().augmentation() is None  # make_dataset's default
    with pytest.raises(InputError, match=r"augment.*rotation_degrees.*Known settings"):
        Recipe.from_config({**config, "augment": {"rotation_degrees": 30}})
    monkeypatch.chdir(tmp_path)  # a relative --out, as users type it
    model = train(recipe, "run", verbose=0)
    files = sorted(p.name for p in (tmp_path / "run" / "snapshots").iterdir())
    assert files == ["epoch_001.weights.h5", "epoch_002.weights.h5"]
    # The last snapshot is the final generator; the first differs from it (it trained on).
    other = load_pretrained(tmp_path / "run" / "model.keras")
    other.generator.load_weights(tmp_path / "run" / "snapshots" / "epoch_002.weights.h5")
    for a, b in zip(other.generator.get_weights(), model.generator.get_weights()):
        np.testing.assert_array_equal(a, b)
    other.generator.load_weights(tmp_path / "run" / "snapshots" / "epoch_001.weights.h5")
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(other.generator.get_weights(), model.generator.get_weights())
    )
    # Weight averaging: the mean of the two epochs' weights, array by array.
    first = other.generator.get_weights()
    average_snapshots(other.generator, sorted((tmp_path / "run" / "snapshots").iterdir()))
    for a, w1, w2 in zip(other.generator.get_weights(), first, model.generator.get_weights()):
        np.testing.assert_allclose(a, (w1 + w2) / 2, rtol=1e-6, atol=1e-7)
    with pytest.raises(InputError, match="snapshots: true"):
        average_snapshots(other.generator, [])
    # `--overwrite` removes the snapshots vsgan wrote, not a user's file beside them.
    (tmp_path / "run" / "snapshots" / "mine.txt").write_text("keep")
    train(recipe, "run", verbose=0, overwrite=True)
    assert (tmp_path / "run" / "snapshots" / "mine.txt").read_text() == "keep"
    manifest = (tmp_path / "run" / ".vsgan-manifest.json").read_text()
    assert '"snapshots/epoch_002.weights.h5"' in manifest
