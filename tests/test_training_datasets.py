"""model.fit on vsgan.data pipelines: synthetic cells learn, each real dataset trains."""

import os
from pathlib import Path

import numpy as np
import pytest

import vsgan
from vsgan.data import make_dataset
from vsgan.datasets import isl_condition_b, mlcp_jurkat, synthetic_cells


def _data_dir():
    for d in (os.environ.get("VSGAN_DATA"), Path(__file__).parents[2] / "shared" / "data"):
        if d and (Path(d) / "isl-condition-b").is_dir():
            return Path(d)
    return None


DATA = _data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="real data (../shared/data) not present")


def _tiny(cin, cout, **kw):
    model = vsgan.Pix2PixHD(
        in_channels=cin,
        out_channels=cout,
        ngf=8,
        n_downsample=2,
        n_blocks=1,
        ndf=8,
        num_d=2,
        n_local_enhancers=0,
        **kw,
    )
    model.compile(niter=1000, niter_decay=0)
    return model


def _pearson(model, ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    pred = model.generator.predict(np.concatenate(xs), verbose=0)
    return float(np.corrcoef(pred.ravel(), np.concatenate(ys).ravel())[0, 1])


def test_tiny_model_on_synthetic_cells_improves_validation_pearson():
    spec = synthetic_cells(10, size=64, seed=0, targets=["nuclei"], val_fraction=0.2)
    train = make_dataset(
        spec, "train", patch_size=32, batch_size=4, patches_per_field=50, seed=0
    )  # 400 patches = 100 steps per epoch
    val = make_dataset(spec, "val", patch_size=32, batch_size=8)
    model = _tiny(1, 1, lambda_l1=10.0)
    before = _pearson(model, val)
    model.fit(train, epochs=3, verbose=0)  # 300 steps
    after = _pearson(model, val)
    assert after > 0.5 and after > before + 0.3, (before, after)


@needs_data
def test_fit_runs_on_isl_condition_b():
    spec = isl_condition_b(DATA, planes=[0, 6, 12], targets=["dapi"])
    ds = make_dataset(spec, "train", patch_size=64, batch_size=2, patches_per_field=4)
    history = _tiny(3, 1).fit(ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["g_loss"][-1])


@needs_data
def test_fit_runs_on_mlcp_jurkat():
    spec = mlcp_jurkat(DATA)
    spec.fields = spec.fields[:200]  # keep the smoke run short
    ds = make_dataset(spec, "train", patch_size=None, batch_size=8)
    history = _tiny(2, 1).fit(ds.take(4), epochs=1, verbose=0)
    assert np.isfinite(history.history["g_loss"][-1])
