"""The command line never loses, mixes or overwrites results (issue 14, class 3), and
`vsgan predict a549 --archive` takes the archive (class 6)."""

import errno
import json
import os

import numpy as np
import pytest
import tifffile

import vsgan
from conftest import TINY
from vsgan import cli
from vsgan.errors import InputError
from vsgan.inference.stain import StainResult
from vsgan.io.files import atomic_path
from vsgan.io.writers import write_stain
from vsgan.training.recipes import Recipe
from vsgan.training.run_folder import LOCK_NAME, ResumeMismatch, RunFolder, RunFolderBusy

TINY_RECIPE = {
    "dataset": "synthetic",
    "dataset_args": {"n_fields": 6, "size": 64},
    "model": {"ngf": 8, "n_downsample": 2, "n_blocks": 1, "ndf": 8, "num_d": 2},
    "patch_size": 32,
    "batch_size": 2,
    "steps_per_epoch": 2,
    "epochs": 1,
    "niter": 1,
    "niter_decay": 0,
    "val_batches": 1,
    "precision": "float32",
}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    vsgan.Pix2PixHD(1, 1, **TINY).save(path)
    return path


def _run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip()


# ------------------------------------------------------------------------- predict
def test_same_file_name_in_two_folders_gives_two_outputs(tmp_path, model_file, capsys):
    for k, folder in enumerate(("a", "b")):
        (tmp_path / folder).mkdir()
        np.save(tmp_path / folder / "img.npy", np.full((16, 16), 100.0 * (k + 1), np.float32))
    out = tmp_path / "out"
    code, err = _run(["predict", model_file, tmp_path / "a", tmp_path / "b", "-o", out], capsys)
    assert code == 0, err
    written = sorted(p.name for p in out.iterdir())
    assert written == ["a_img_prediction.ome.tif", "b_img_prediction.ome.tif"]


def test_same_stem_with_two_suffixes_gives_two_outputs(tmp_path, model_file, capsys):
    np.save(tmp_path / "img.npy", np.ones((16, 16), np.float32))
    import tifffile

    tifffile.imwrite(tmp_path / "img.tif", np.ones((16, 16), np.uint16))
    out = tmp_path.parent / f"{tmp_path.name}-out"
    code, err = _run(
        ["predict", model_file, tmp_path / "img.npy", tmp_path / "img.tif", "-o", out], capsys
    )
    assert code == 0, err
    assert len(list(out.iterdir())) == 2


@pytest.mark.parametrize("where", ["same", "parent"])
def test_output_folder_that_is_or_holds_the_input_is_refused(tmp_path, model_file, capsys, where):
    inputs = tmp_path / "in"
    inputs.mkdir()
    np.save(inputs / "img.npy", np.ones((16, 16), np.float32))
    out = inputs if where == "same" else tmp_path
    code, err = _run(["predict", model_file, inputs, "-o", out, "--overwrite"], capsys)
    assert code == 2 and "read back as inputs" in err
    assert sorted(p.name for p in inputs.iterdir()) == ["img.npy"]


def test_stale_temporary_does_not_block_predict(tmp_path, model_file, capsys):
    np.save(tmp_path / "img.npy", np.ones((16, 16), np.float32))
    out = tmp_path.parent / f"{tmp_path.name}-pred"
    out.mkdir()
    (out / ".tmp-abc123.tif").write_bytes(b"half")  # a SIGKILL mid-write
    code, err = _run(["predict", model_file, tmp_path / "img.npy", "-o", out], capsys)
    assert code == 0, err


@pytest.mark.parametrize("names", [["x", "x"], ["a/b", "a_b"]], ids=["equal", "equal-as-files"])
def test_two_output_channels_with_one_name_are_refused(tmp_path, names):
    result = StainResult(mean=np.zeros((4, 4, 2), np.float32), std=None)
    with pytest.raises(InputError, match="overwrite each other"):
        write_stain(tmp_path / "f", result, names)
    assert list(tmp_path.iterdir()) == []


def test_model_with_repeated_output_names_is_refused():
    with pytest.raises(InputError, match="repeat a name"):
        vsgan.Pix2PixHD(1, 2, output_channels=["dna", "dna"], **TINY)


def test_full_disk_error_names_the_file(tmp_path):
    target = tmp_path / "model.keras"
    with pytest.raises(OSError, match="model.keras") as info:
        with atomic_path(target):
            raise OSError(errno.ENOSPC, "4096 requested and 956 written")
    assert info.value.errno == errno.ENOSPC and not target.exists()
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- train
def _config(tmp_path, **changes):
    path = tmp_path / "recipe-in.json"
    path.write_text(json.dumps({**TINY_RECIPE, **changes}))
    return path


def test_second_train_on_one_folder_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    with RunFolder(run):  # another process training there (flock is per open file)
        code, err = _run(["train", "--config", _config(tmp_path), "--out", run], capsys)
    assert code == 2 and "in use by another vsgan train" in err
    with pytest.raises(RunFolderBusy):
        with RunFolder(run), RunFolder(run):
            pass


def test_mistyped_data_never_falls_back_to_vsgan_data(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VSGAN_DATA", str(tmp_path))
    run = tmp_path / "run"
    argv = ["train", "--config", _config(tmp_path), "--out", run, "--data", tmp_path / "dat"]
    code, err = _run(argv, capsys)
    assert code == 2 and "does not fall back" in err
    assert not run.exists()  # nothing made for a run that never started


def test_batch_larger_than_the_training_set_is_an_error(tmp_path, capsys):
    config = _config(tmp_path, patch_size=None, batch_size=64)
    code, err = _run(["train", "--config", config, "--out", tmp_path / "run"], capsys)
    assert code == 2 and "0 steps" in err


@pytest.mark.parametrize(
    "change", [{"seed": 7}, {"patch_size": 16}, {"dataset_args": {"n_fields": 8, "size": 64}}]
)
def test_resume_with_another_experiment_is_refused_unless_forced(tmp_path, capsys, change):
    run = tmp_path / "run"
    run.mkdir()
    saved = Recipe.from_config(TINY_RECIPE).get_config()
    (run / "recipe.json").write_text(json.dumps({**saved, "data": None}))
    (run / "backup").mkdir()  # a run killed after its first backup
    config = _config(tmp_path, **change)
    code, err = _run(["train", "--config", config, "--out", run], capsys)
    assert code == 2 and "another experiment" in err and "--force-resume" in err
    key = next(iter(change))
    assert key in err
    RunFolder(run).check_resume({**saved, **change, "data": None}, force=True)
    with pytest.raises(ResumeMismatch):
        RunFolder(run).check_resume({**saved, **change, "data": None})
    RunFolder(run).check_resume({**saved, "epochs": 9, "data": None})  # more epochs: fine


def test_overwrite_removes_only_what_vsgan_wrote(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    mine = {"notebook.ipynb": "{}", "data/cells.tif": "pixels", "notes.txt": "keep"}
    for name, text in mine.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)
    config = _config(tmp_path)
    code, err = _run(["train", "--config", config, "--out", run, "--quiet"], capsys)
    assert code == 0, err
    written = json.loads((run / ".vsgan-manifest.json").read_text())["written"]
    assert {"recipe.json", "model.keras", "history.csv"} <= set(written)
    (run / ".tmp-killed.keras").write_bytes(b"half")  # left by a SIGKILL mid-write
    code, err = _run(["train", "--config", config, "--out", run], capsys)
    assert code == 2 and "finished run" in err
    code, err = _run(["train", "--config", config, "--out", run, "--overwrite", "--quiet"], capsys)
    assert code == 0, err
    for name, text in mine.items():
        assert (run / name).read_text() == text
    assert (run / "model.keras").is_file() and not list(run.glob(".tmp-*"))
    assert len((run / "history.csv").read_text().splitlines()) == 2  # one epoch, afresh
    assert (run / LOCK_NAME).exists()


def test_run_folder_clear_never_leaves_the_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    (run / ".vsgan-manifest.json").write_text(json.dumps({"written": ["../precious.txt"]}))
    with RunFolder(run) as folder:
        folder.clear()
    assert outside.read_text() == "keep"


# --------------------------------------------------------------------------- a549
def test_predict_a549_takes_the_archive_path(tmp_path, capsys, monkeypatch):
    from test_zoo_pix2pixhd import build_a549_archive

    import vsgan.zoo.a549 as a549

    monkeypatch.setitem(a549.A549_CONFIG, "dropout", 0.0)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(a549, "_download", lambda _: pytest.fail("tried to download"))
    archive = build_a549_archive(tmp_path / "dlmbl_requisites.zip")
    np.save(tmp_path / "phase.npy", np.ones((16, 16), np.float32))
    out = tmp_path / "pred"
    argv = ["predict", "a549", tmp_path / "phase.npy", "-o", out, "--archive", archive]
    code, err = _run(argv, capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["phase_prediction.ome.tif"]
    with tifffile.TiffFile(out / "phase_prediction.ome.tif") as tif:
        assert "nuclei_prediction" in tif.ome_metadata  # channels named in the one file
    cached = list((tmp_path / "home" / "vsgan").glob("a549-*.keras"))
    assert len(cached) == 1 and oct(os.stat(cached[0]).st_mode & 0o077) != "0o0"
