"""`vsgan.inference.stain`: tiling, blending, normalisation, sampling, TTA, validation."""

import keras
import numpy as np
import pytest
from scipy import ndimage

import vsgan.inference.stain as stain_module
from conftest import TINY
from vsgan.data.normalize import Normalization, StainPreprocessor
from vsgan.errors import InputError
from vsgan.inference.stain import StainResult, sample, stain, tile_grid
from vsgan.models import Pix2PixHD
from vsgan.models.layers import InstanceNormalization


class FnGenerator:
    """A generator made of a NumPy function of a (B, H, W, C) batch; records batch shapes."""

    def __init__(self, fn):
        self.fn = fn
        self.shapes = []

    def predict_on_batch(self, x):
        self.shapes.append(x.shape)
        return self.fn(x)

    def __call__(self, x, training=False):
        return self.predict_on_batch(np.asarray(x))


class StandIn:
    """The model contract `stain` relies on, around any generator."""

    def __init__(
        self, generator, in_channels=1, out_channels=1, multiple=4, dropout=0.0, normalization=None
    ):
        self.generator = generator
        self.in_channels, self.out_channels = in_channels, out_channels
        self.multiple, self.dropout = multiple, dropout
        self.input_channels = [f"c{i}" for i in range(in_channels)]
        self.preprocessor = StainPreprocessor.coerce(normalization)


def pointwise(x):
    # A per-pixel map: tiling and blending must reproduce it exactly.
    return np.tanh(0.5 * x[..., :1] - 0.25 * x[..., -1:]).astype(np.float32)


def instance_norm_model(seed=0):
    keras.utils.set_random_seed(seed)
    x = keras.Input((None, None, 1))
    h = keras.layers.Conv2D(8, 3, padding="same")(x)
    h = keras.layers.ReLU()(InstanceNormalization()(h))
    h = keras.layers.Conv2D(1, 3, padding="same", activation="tanh")(h)
    return keras.Model(x, h)


def field(h, w, seed=0, sigma=3.0):
    """Texture on an illumination ramp: tiles see different local statistics."""
    rng = np.random.default_rng(seed)
    tex = ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma)
    yy, xx = np.mgrid[:h, :w]
    return ((tex / tex.std() + 4 * xx / w + 2 * yy / h) * 100 + 1000).astype(np.uint16)


def border_ratio(mean, grid):
    """Mean |gradient| across tile borders / mean |gradient| elsewhere (worst axis)."""
    m = mean[..., 0].astype(np.float64)
    ratios = []
    for axis, starts in ((1, grid.x_starts), (0, grid.y_starts)):
        size, tile = m.shape[axis], grid.tile_shape[axis]
        profile = np.abs(np.diff(m, axis=axis)).mean(axis=1 - axis)
        lines = [s - 1 for s in starts[1:]] + [s + tile - 1 for s in starts[:-1]]
        lines += [(a + tile + b) // 2 for a, b in zip(starts[:-1], starts[1:])]  # mid-overlap
        border = np.zeros(size - 1, bool)
        border[lines] = True
        elsewhere = ~border
        elsewhere[:4] = elsewhere[-4:] = False  # the field's own edges
        if border.any():
            ratios.append(profile[border].mean() / profile[elsewhere].mean())
    return max(ratios)


# ---------------------------------------------------------------------------- tiling


@pytest.mark.parametrize("shape", [(97, 131), (64, 64), (5, 200), (1, 1), (150, 33)])
def test_tiled_pointwise_model_equals_untiled(shape):
    rng = np.random.default_rng(1)
    image = rng.random((*shape, 2)).astype(np.float32) * 3000
    norm = {"input": Normalization.fixed(3000, 2).get_config(), "target": None}
    model = StandIn(FnGenerator(pointwise), in_channels=2, multiple=8, normalization=norm)
    result = stain(model, image, tile_size=32, overlap=8, batch_size=3)
    expected = (pointwise(image / 1500.0 - 1.0) + 1) / 2
    assert result.mean.shape == (*shape, 1) and result.mean.dtype == np.float32
    np.testing.assert_allclose(result.mean, expected, atol=2e-6)
    assert result.std is None
    grid = tile_grid(*shape, 32, 8, 8)
    assert result.tiles == len(grid.y_starts) * len(grid.x_starts)
    # Every generator call saw whole tiles, at most batch_size of them: memory is bounded
    # by the tile batch, whatever the field size.
    for s in model.generator.shapes:
        assert s[0] <= 3 and s[1:3] == grid.tile_shape and s[1] % 8 == 0 and s[2] % 8 == 0


def test_tile_grid_covers_with_overlap():
    grid = tile_grid(1000, 300, tile_size=500, overlap=100, multiple=16)
    # 3 tiles are needed; each shrinks to the smallest multiple of 16 that still overlaps
    # its neighbour by >= 100 px: (1000 + 2 * 100) / 3 = 400.
    assert grid.tile_shape == (400, 304) and grid.padded_shape == (1000, 304)
    ys = grid.y_starts
    assert len(ys) == 3 and ys[0] == 0 and ys[-1] + 400 == 1000
    assert all(a + 400 - b >= 100 for a, b in zip(ys[:-1], ys[1:]))
    assert tile_grid(512, 512).y_starts == (0,)  # default tile 512: one pass


def test_small_field_is_one_generator_pass_of_real_model():
    model = Pix2PixHD(1, 1, **TINY)
    image = field(45, 70).astype(np.float32)
    result = stain(model, image)
    lo, hi = np.percentile(image, [1, 99.8])
    x = (2 * (image - lo) / (hi - lo) - 1)[None, ..., None].astype(np.float32)
    expected = (np.asarray(model.generator(x))[0] + 1) / 2
    assert result.tiles == 1
    np.testing.assert_allclose(result.mean, expected, atol=1e-5)


def test_without_stored_statistics_each_field_is_normalised_by_its_own_percentiles():
    model = StandIn(instance_norm_model(), multiple=1)
    image = field(48, 40).astype(np.float64)
    a = stain(model, image).mean
    b = stain(model, 7.5 * image + 300).mean  # same field, other gain and offset
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert a.min() >= 0 and a.max() <= 1  # tanh range mapped to [0, 1]


def test_stored_statistics_give_target_units():
    norm = {
        "input": Normalization.fixed(2000).get_config(),
        "target": Normalization.fixed(4400).get_config(),
    }
    model = StandIn(FnGenerator(pointwise), multiple=4, normalization=norm)
    image = np.random.default_rng(2).integers(0, 2000, (40, 52)).astype(np.uint16)
    result = stain(model, image)
    y = pointwise((image / 1000.0 - 1.0)[..., None])
    np.testing.assert_allclose(result.mean, (y + 1) / 2 * 4400, rtol=1e-5, atol=1e-3)


# ---------------------------------------------------------------------------- seams


def test_blending_removes_seams_that_hard_tiles_leave():
    model = StandIn(instance_norm_model(), multiple=4)
    image = field(256, 256)
    # Abutting tiles (overlap 0) cut hard: the check must see those seams ...
    hard = stain(model, image, tile_size=64, overlap=0).mean
    assert border_ratio(hard, tile_grid(256, 256, 64, 0, 4)) > 2.0
    # ... and find none once tiles overlap and blend.
    soft = stain(model, image, tile_size=64, overlap=16).mean
    assert border_ratio(soft, tile_grid(256, 256, 64, 16, 4)) < 1.15


def test_default_tiling_leaves_no_seams():
    model = StandIn(instance_norm_model(seed=1), multiple=16)
    image = field(1100, 700, seed=3)
    result = stain(model, image, batch_size=2)
    grid = tile_grid(1100, 700, multiple=16)
    assert result.tiles == len(grid.y_starts) * len(grid.x_starts) > 1
    assert border_ratio(result.mean, grid) < 1.15


# ---------------------------------------------------------------------------- sampling


class CountingGenerator(FnGenerator):
    """Sample k of a batch of n stacked copies returns k (so the std is known exactly)."""

    def __init__(self):
        super().__init__(None)

    def predict_on_batch(self, x):
        self.shapes.append(x.shape)
        return np.zeros((*x.shape[:3], 1), np.float32)

    def __call__(self, x, training=False):
        self.shapes.append(x.shape)
        return np.zeros((*x.shape[:3], 1), np.float32)


class SteppedGenerator:
    """Monte-Carlo draws that are the given constants, in order, one per stacked image."""

    def __init__(self, values):
        self.draws = iter(values)
        self.calls = []

    def __call__(self, x, training=False):
        x = np.asarray(x)
        self.calls.append(len(x))
        return np.stack([np.full((*x.shape[1:3], 1), next(self.draws), np.float32) for _ in x])


def stepped_sampler(values):
    return StandIn(
        SteppedGenerator(values),
        dropout=0.2,
        normalization={"input": None, "target": Normalization.fixed(2).get_config()},
    )


@pytest.mark.parametrize("batch_size", [16, 3])
def test_samples_give_mean_and_sample_std(batch_size):
    values = np.linspace(-0.8, 0.6, 8)
    model = stepped_sampler(values)
    result = stain(model, np.ones((20, 24)), samples=8, batch_size=batch_size)
    target_units = values + 1  # fixed(2): y -> (y + 1) / 2 * 2
    np.testing.assert_allclose(result.mean, target_units.mean(), rtol=1e-6)
    np.testing.assert_allclose(result.std, target_units.std(ddof=1), rtol=1e-5)
    if batch_size >= 8:  # all samples of the tile in ONE call
        assert model.generator.calls == [8]
    else:  # chunks of at most batch_size, merged exactly
        assert model.generator.calls == [3, 3, 2]


def test_mc_dropout_batches_tiles_and_samples(monkeypatch):
    model = Pix2PixHD(1, 1, dropout=0.5, **TINY)
    calls = []
    original = stain_module._sample

    def spy(m, x, n, *args):
        calls.append((x.shape[0], n))
        return original(m, x, n, *args)

    monkeypatch.setattr(stain_module, "_sample", spy)
    image = field(90, 90)
    result = stain(model, image, samples=4, tile_size=48, overlap=12, batch_size=8)
    assert result.std.shape == result.mean.shape == (90, 90, 1)
    assert result.std.min() >= 0 and result.std.mean() > 1e-4
    # 9 tiles, 4 samples each, 8 images per call: 2 tiles x 4 samples per call.
    assert calls == [(2, 4)] * 4 + [(1, 4)]
    single = stain(model, image, tile_size=48, overlap=12)
    assert single.std is None


def test_samples_without_dropout_warn():
    model = Pix2PixHD(1, 1, **TINY)
    with pytest.warns(UserWarning, match="no dropout"):
        result = stain(model, field(32, 32), samples=2)
    assert np.all(result.std < 1e-5)


# ---------------------------------------------------------------------------- TTA


def test_tta_views_are_inverted_back_into_place():
    # A pointwise model is equivariant: every view must land where it came from.
    model = StandIn(FnGenerator(pointwise), multiple=4)
    image = field(40, 56).astype(np.float32)
    plain = stain(model, image)
    tta = stain(model, image, tta=True)
    assert tta.views == 8
    np.testing.assert_allclose(tta.mean, plain.mean, atol=1e-6)
    np.testing.assert_allclose(tta.std, 0, atol=1e-6)


def test_tta_averages_flips_and_rotations():
    def shifted(x):  # not equivariant: looks one pixel to the right
        return np.tanh(np.roll(x, -1, axis=2)).astype(np.float32)

    model = StandIn(
        FnGenerator(shifted),
        multiple=1,
        normalization={
            "input": Normalization("identity").get_config(),
            "target": Normalization("identity").get_config(),
        },
    )
    image = np.random.default_rng(5).random((12, 12)).astype(np.float32)
    result = stain(model, image, tta=True)
    views = []
    for flip in (False, True):
        for k in range(4):
            v = image[:, ::-1] if flip else image
            v = np.rot90(np.tanh(np.roll(np.rot90(v, k), -1, axis=1)), -k)
            views.append(v[:, ::-1] if flip else v)
    views = np.stack(views)
    np.testing.assert_allclose(result.mean[..., 0], views.mean(0), atol=1e-6)
    np.testing.assert_allclose(result.std[..., 0], views.std(0, ddof=1), atol=1e-6)


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "image, words",
    [
        (np.full((16, 16), np.nan), "NaN"),
        (np.full((16, 16), np.inf, np.float32), "Inf"),
        (np.zeros((16, 16, 3)), "3 channel"),
        (np.zeros((1, 16, 16)), "channel"),
        (np.zeros((0, 16)), "empty"),
        (np.array([["a", "b"], ["c", "d"]]), "dtype"),
        (np.zeros((2, 16, 16, 1)), "shape"),
    ],
)
def test_bad_images_raise_input_error(image, words):
    model = StandIn(FnGenerator(pointwise))
    with pytest.raises(InputError, match=words):
        stain(model, image)


def test_channels_first_hint():
    model = StandIn(FnGenerator(pointwise), in_channels=2)
    with pytest.raises(InputError, match="moveaxis"):
        stain(model, np.zeros((2, 16, 16)))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(samples=0),
        dict(samples=1.5),
        dict(tile_size=0),
        dict(tile_size=32, overlap=32),
        dict(overlap=-1),
        dict(batch_size=0),
    ],
)
def test_bad_arguments_raise_input_error(kwargs):
    with pytest.raises(InputError):
        stain(StandIn(FnGenerator(pointwise)), np.zeros((16, 16)), **kwargs)


def test_result_and_progress_bar(capsys):
    model = StandIn(FnGenerator(pointwise))
    result = stain(model, np.zeros((70, 70), np.uint8), tile_size=32, progress=True)
    assert isinstance(result, StainResult) and result.tiles == 9
    assert "stain" in capsys.readouterr().err


# ------------------------------------------------------------------- sample


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((1, 8, 8, 3), "float32"), "but the model takes 1"),
        (np.full((8, 8, 1), np.nan, "float32"), "NaN"),
        (np.array([["a"]]), "not a number type"),
        (np.zeros((1, 0, 8, 1), "float32"), "empty"),
    ],
)
def test_sample_rejects_bad_input_clearly(x, message):
    m = Pix2PixHD(1, 1, **TINY)
    with pytest.raises(InputError, match=message):
        sample(m, x, 2)


def test_sample_draws_distinct_samples_only_with_dropout():
    x = np.random.default_rng(0).normal(size=(3, 16, 24, 1)).astype("float32")
    with_dropout = sample(Pix2PixHD(1, 2, dropout=0.3, **TINY), x, n=4, batch_size=5)
    assert with_dropout.shape == (4, 3, 16, 24, 2)
    assert with_dropout.std(axis=0).mean() > 1e-3
    without = Pix2PixHD(1, 2, dropout=0.0, **TINY)
    samples = sample(without, x, n=3)
    np.testing.assert_allclose(samples[0], samples[2], atol=1e-6)
    np.testing.assert_allclose(samples[1], without.generator.predict(x, verbose=0), atol=1e-5)


# ---------------------------------------------------------------------------- precision


def test_default_precision_follows_the_cpu_and_the_environment(tmp_path, monkeypatch):
    with_bf16 = tmp_path / "amx"
    with_bf16.write_text("processor : 0\nflags : fpu avx2 avx512f avx512_bf16 amx_tile\n")
    without = tmp_path / "avx2"
    without.write_text("processor : 0\nflags : fpu sse avx avx2 fma\n")
    assert stain_module._cpu_has_bf16(str(with_bf16))
    assert not stain_module._cpu_has_bf16(str(without))
    assert not stain_module._cpu_has_bf16(str(tmp_path / "missing"))
    monkeypatch.setenv("VSGAN_PRECISION", "mixed_bfloat16")
    assert stain_module.default_precision() == "bfloat16"
    monkeypatch.delenv("VSGAN_PRECISION")
    expected = "bfloat16" if stain_module._cpu_has_bf16() else "float32"
    assert stain_module.default_precision() == expected  # no GPU in the test environment


def test_unknown_precision_is_refused():
    model = Pix2PixHD(1, 1, **TINY)
    with pytest.raises(InputError, match="precision='int8'.*Fix"):
        stain(model, field(32, 32), precision="int8")


def _policies(model):
    layers = model.generator._flatten_layers(include_self=False, recursive=True)
    return [layer.dtype_policy.name for layer in layers]


def test_precision_overrides_without_touching_the_model_or_the_global_policy():
    model = Pix2PixHD(1, 1, dropout=0.2, **TINY)
    image = field(64, 80)
    policies, weights = _policies(model), model.generator.get_weights()
    exact = stain(model, image, precision="float32").mean
    fast = stain(model, image, precision="bfloat16")
    assert fast.mean.dtype == np.float32
    assert keras.mixed_precision.global_policy().name == "float32"
    assert _policies(model) == policies
    for before, after in zip(weights, model.generator.get_weights()):
        np.testing.assert_array_equal(before, after)
    difference = np.abs(fast.mean - exact)
    assert 0 < difference.max() < 0.05 * np.ptp(exact)  # really bfloat16, and close
    # Weight changes after the first pass show up in the cached bfloat16 pass.
    model.generator.set_weights([w * 0.5 for w in weights])
    assert np.abs(stain(model, image, precision="bfloat16").mean - fast.mean).max() > 1e-3

    # A model built under a bfloat16 policy stains in exact float32 when asked.
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    mixed = Pix2PixHD(1, 1, dropout=0.2, **TINY)
    keras.mixed_precision.set_global_policy("float32")
    mixed.generator.set_weights(weights)
    model.generator.set_weights(weights)
    np.testing.assert_allclose(stain(mixed, image, precision="float32").mean, exact, atol=1e-5)


def test_sampling_runs_the_deterministic_prefix_once_per_tile(monkeypatch):
    model = Pix2PixHD(1, 1, dropout=0.5, **TINY)
    x = np.random.default_rng(3).normal(size=(2, 24, 20, 1)).astype("float32")
    passes = stain_module._passes(model.generator, "float32")
    prefix_batches = []
    prefix = passes.prefix
    monkeypatch.setattr(passes, "prefix", lambda t: prefix_batches.append(len(t)) or prefix(t))
    layers = model.generator._flatten_layers(include_self=False, recursive=True)
    states = [v.seed_generator.state for v in layers if isinstance(v, keras.layers.Dropout)]
    saved = [s.numpy() for s in states]
    shared = stain_module.sample(model, x, n=6, batch_size=12, precision="float32")
    assert prefix_batches == [2]  # 2 images, 6 samples: the prefix ran once per image
    for state, value in zip(states, saved):
        state.assign(value)
    whole = np.asarray(model.generator(np.concatenate([x] * 6), training=True))
    # Same random state, same masks: the shared prefix changes nothing but the time.
    np.testing.assert_allclose(shared.reshape(whole.shape), whole, atol=2e-6)
    assert shared.std(axis=0).mean() > 1e-3
    # Small generator batches: the prefix features are gathered per chunk, in order.
    chunked = stain_module.sample(model, x, n=6, batch_size=5, precision="float32")
    assert chunked.shape == (6, 2, 24, 20, 1)
    assert prefix_batches[1:] == [2]
    # stain: 8 samples in chunks of 3 per call, still one prefix pass per tile and view.
    prefix_batches.clear()
    result = stain(model, x[0], samples=8, batch_size=3, tta=True, precision="float32")
    assert prefix_batches == [1] * 8 and result.std.mean() > 1e-4


@pytest.mark.parametrize("preset", ["isl-nuclei", "jurkat-dna"])
def test_presets_in_bfloat16_score_within_0005_pearson_r_of_float32(preset, data_dir):
    """A small held-out case; benchmarks/README.md has the full held-out figures."""
    from vsgan.evaluation.metrics import pearson_r
    from vsgan.evaluation.report import dataset_for_model
    from vsgan.zoo import get_preset, load_pretrained

    model, record = load_pretrained(preset), get_preset(preset)
    spec, x_idx, y_idx = dataset_for_model(
        model, record.dataset, data_dir, **(record.dataset_args or {})
    )
    crops = []
    for f in spec.fields_in("test"):
        x, y = f.read()
        y0, y1, x0, x1 = next(iter(f.rects("test", x.shape[:2])))
        size = min(128, y1 - y0, x1 - x0)
        cy, cx = (y0 + y1 - size) // 2, (x0 + x1 - size) // 2
        window = (slice(cy, cy + size), slice(cx, cx + size))
        crops.append((x[window][..., x_idx], y[window][..., y_idx]))
        if sum(c[0].shape[0] * c[0].shape[1] for c in crops) >= 128 * 128:
            break
    r = {}
    for precision in ("float32", "bfloat16"):
        preds = [stain(model, x, precision=precision).mean for x, _ in crops]
        pred = np.concatenate([p.reshape(-1, p.shape[-1]) for p in preds])
        target = np.concatenate([t.reshape(-1, t.shape[-1]) for _, t in crops])
        r[precision] = pearson_r(pred[:, None], target[:, None])
    assert r["float32"] > 0.3  # the crop holds signal
    assert abs(r["bfloat16"] - r["float32"]) < 0.005, r
