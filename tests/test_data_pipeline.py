"""tf.data pipeline: shapes, seeds, disjoint splits, memory cap, foreground, alignment."""

import numpy as np
import pytest
import tensorflow as tf

from vsgan.data.augment import Augmentation
from vsgan.data.normalize import Normalization
from vsgan.data.pipeline import PatchSampler, make_dataset
from vsgan.data.spec import Field, PairedDataset, Source
from vsgan.data.splits import split_regions
from vsgan.errors import InputError

RNG = np.random.default_rng(0)


def _spec(n=4, size=48, cin=1, cout=2, val_fraction=0.25):
    x = RNG.random((n, size, size, cin)).astype(np.float32)
    y = RNG.random((n, size, size, cout)).astype(np.float32) * 1000
    return PairedDataset.from_arrays(
        x,
        y,
        val_fraction=val_fraction,
        input_norm=Normalization("identity"),
        target_norm=Normalization.fixed(1000, cout),
    )


def _coords_field(size=128):
    """One field whose input holds each pixel's (row, col): patches tell where they came from."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    x = np.stack([yy, xx], -1)
    field = Field(
        "big",
        [Source(array=x)],
        [Source(array=x[..., :1] * 2 + 1)],
        split=None,
        regions=split_regions(
            size, size, test_region=(64, 128, 64, 128), val_fraction=0.25, min_size=32
        ),
    )
    return PairedDataset(
        [field],
        ["row", "col"],
        ["t"],
        input_norm=Normalization("identity"),
        target_norm=Normalization("identity"),
    )


def _pixels(ds):
    seen = set()
    for x, _ in ds:
        for p in x.numpy():
            seen.update(zip(p[..., 0].astype(int).ravel(), p[..., 1].astype(int).ravel()))
    return seen


def test_batches_are_normalised_float32_nhwc():
    ds = make_dataset(_spec(), patch_size=32, batch_size=2)
    x, y = next(iter(ds))
    assert x.dtype == tf.float32 and x.shape == (2, 32, 32, 1) and y.shape == (2, 32, 32, 2)
    assert -1.01 <= float(tf.reduce_min(y)) and float(tf.reduce_max(y)) <= 1.01


def test_same_seed_same_stream_other_seed_other_stream():
    spec = _spec()

    def first(seed):
        return [b[0].numpy() for b in make_dataset(spec, patch_size=24, batch_size=2, seed=seed)]

    a, b, c = first(0), first(0), first(1)
    assert len(a) == len(b) and all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c))
    ds = make_dataset(spec, patch_size=24, batch_size=2, seed=0)
    e1, e2 = [x.numpy() for x, _ in ds], [x.numpy() for x, _ in ds]
    assert not all(np.array_equal(p, q) for p, q in zip(e1, e2))  # new crops each epoch


def test_region_split_validation_and_test_never_overlap_training():
    spec = _coords_field()
    train = _pixels(
        make_dataset(
            spec, "train", patch_size=32, batch_size=4, augment=False, patches_per_field=200
        )
    )
    val = _pixels(make_dataset(spec, "val", patch_size=32, batch_size=4))
    test = _pixels(make_dataset(spec, "test", patch_size=32, batch_size=4))
    assert train and val and test
    assert not train & val and not train & test and not val & test
    assert all(not (r >= 64 and c >= 64) for r, c in train)  # test quadrant never trained on
    assert test == {(r, c) for r in range(64, 128) for c in range(64, 128)}  # tiles cover it


def test_field_split_keeps_fields_apart():
    spec = _spec(n=5, val_fraction=0.4)
    for f in spec.fields:  # tag every field's pixels with its index
        f.inputs[0].array[:] = int(f.name[-4:])
    train = {
        float(v) for x, _ in make_dataset(spec, "train", 16, 2, augment=False) for v in np.unique(x)
    }
    val = {float(v) for x, _ in make_dataset(spec, "val", 16, 2) for v in np.unique(x)}
    assert train.isdisjoint(val) and len(train) == 3 and len(val) == 2


def test_never_more_fields_in_memory_than_allowed():
    spec = _spec(n=9, val_fraction=0.0)
    ds = make_dataset(
        spec, patch_size=16, batch_size=2, max_fields_in_memory=2, patches_per_field=3
    )
    n = sum(int(x.shape[0]) for x, _ in ds)
    assert n == 26  # 27 patches, last partial batch dropped
    assert ds.sampler.cache.peak <= 2 and ds.sampler.cache.loads >= 9
    cached = make_dataset(spec, patch_size=16, batch_size=2)
    for _ in range(2):
        list(cached)
    assert cached.sampler.cache.loads == 9  # decoded once, reused across epochs


def test_the_dataset_streams_what_the_sampler_plans_chunk_by_chunk():
    """make_dataset (numpy_function calls, no Python generator) yields exactly the sampler's
    stream, epoch after epoch; a chunk's plan depends on (seed, epoch, chunk) only, so it needs
    none of the chunks before it."""
    spec = _spec(n=7, val_fraction=0.0)
    kw = dict(patch_size=16, patches_per_field=3, seed=5, max_fields_in_memory=3)
    ds = make_dataset(spec, batch_size=1, augment=False, **kw)
    twin = PatchSampler(spec, **kw)
    for _ in range(2):
        got = [(x.numpy()[0], y.numpy()[0]) for x, y in ds]
        want = [(x, y) for x, y, _ in twin]
        assert len(got) == len(want) == 21
        pairs = zip(got, want)
        assert all(np.array_equal(a, c) and np.array_equal(b, d) for (a, b), (c, d) in pairs)
    assert ds.sampler.num_chunks() == 3 and ds.sampler.cache.peak <= 3
    straight = [PatchSampler(spec, **kw).chunk_plan(4, c) for c in range(3)]
    assert PatchSampler(spec, **kw).chunk_plan(4, 2) == straight[2]
    assert straight[1] != PatchSampler(spec, **kw).chunk_plan(5, 1)  # each epoch, new crops


def test_foreground_weighting_favours_target_signal():
    y = np.zeros((1, 256, 256, 1), np.float32)
    y[0, :64, :64] = 1000.0  # signal in one corner only
    x = RNG.random((1, 256, 256, 1)).astype(np.float32)
    spec = PairedDataset.from_arrays(
        x,
        y,
        val_fraction=0,
        input_norm=Normalization("identity"),
        target_norm=Normalization.fixed(1000),
    )

    def fg(weighted):
        s = PatchSampler(
            spec, patch_size=32, patches_per_field=400, foreground_weighted=weighted, seed=3
        )
        return np.mean([(t > 0).mean() for _, t, _ in s])

    assert fg(True) > 2 * fg(False)


def test_patch_larger_than_image_and_empty_split_errors():
    spec = _spec(size=32)
    with pytest.raises(InputError, match="patch 64x64 is larger than the image 32x32.*Fix"):
        make_dataset(spec, patch_size=64)
    with pytest.raises(InputError, match="no fields in split 'test'"):
        make_dataset(spec, "test", patch_size=16)


def test_geometric_augmentation_keeps_input_and_target_aligned():
    x = tf.random.stateless_uniform((33, 33, 2), (1, 2))
    y = 2.0 * x[..., :1] + 1.0  # any pixel-wise affine relation must survive
    aug = Augmentation.geometric_only(rotate_degrees=15.0, scale_range=(0.9, 1.1))
    changed = 0
    for k in range(16):
        xa, ya = aug(x, y, tf.constant([k, 7]))
        np.testing.assert_allclose(ya.numpy(), 2.0 * xa.numpy()[..., :1] + 1.0, atol=1e-4)
        changed += not np.allclose(xa.numpy(), x.numpy())
    assert changed >= 12
    flips = Augmentation.geometric_only()
    xa, ya = flips(x, y, tf.constant([3, 3]))  # exact for flips / rot90
    np.testing.assert_array_equal(ya.numpy(), 2.0 * xa.numpy()[..., :1] + 1.0)


def test_intensity_augmentation_touches_the_input_only():
    x = tf.random.stateless_uniform((32, 32, 1), (1, 2))
    y = tf.random.stateless_uniform((32, 32, 1), (3, 4))
    aug = Augmentation(
        flips=False,
        rot90=False,
        contrast=0.3,
        gamma=0.3,
        noise_std=0.1,
        blur_sigma=1.5,
        intensity_prob=1.0,
    )
    xa, ya = aug(x, y, tf.constant([5, 6]))
    np.testing.assert_array_equal(ya.numpy(), y.numpy())
    assert not np.allclose(xa.numpy(), x.numpy())
    again, _ = aug(x, y, tf.constant([5, 6]))
    np.testing.assert_array_equal(again.numpy(), xa.numpy())  # stateless: same seed, same result
    assert Augmentation.from_config(aug.get_config()) == aug
