"""`make_dataset`: a `PairedDataset` -> a `tf.data.Dataset` of normalised (input, target) patches.

Fields are decoded in parallel threads, normalised once and kept in memory (all of them when they
fit, otherwise at most `max_fields_in_memory` at a time, visited in chunks). Training patches are
random crops (optionally favouring crops with target signal), drawn from a seeded plan per epoch;
validation and test patches tile their regions without overlap and without augmentation. Paired
augmentation runs in parallel `tf.data` maps with a per-patch stateless seed, so the stream is the
same for a given seed whatever the parallelism.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf

from vsgan.data.augment import Augmentation
from vsgan.data.spec import PairedDataset
from vsgan.data.splits import Rect
from vsgan.errors import InputError

DEFAULT_CACHE_BYTES = 2 * 2**30


class FieldCache:
    """Decoded, normalised fields, at most `capacity` of them at a time (least recently used out).

    Args:
        spec: the dataset spec (its normalisations must be fitted).
        capacity: the most fields held at once.
        workers: decoding threads.

    Attributes:
        peak: the largest number of fields held at once so far.
        loads: how many times a field was decoded.
    """

    def __init__(self, spec: PairedDataset, capacity: int, workers: int = 2):
        self.spec = spec
        self.capacity = max(1, int(capacity))
        self.workers = max(1, int(workers))
        self._fields: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()
        self.peak = 0
        self.loads = 0
        self.foreground = False

    def _decode(self, i: int):
        field = self.spec.fields[i]
        x, y = field.read()
        x = self.spec.input_norm.normalize(x)
        y = self.spec.target_norm.normalize(y)
        fg = _foreground_integral(y) if self.foreground else None
        return x, y, fg

    def load(self, indices: Sequence[int]) -> None:
        """Makes `indices` resident (decoding the missing ones in parallel), evicting others."""
        indices = list(dict.fromkeys(indices))
        if len(indices) > self.capacity:
            raise InputError(f"cannot hold {len(indices)} fields with capacity {self.capacity}.")
        missing = [i for i in indices if i not in self._fields]
        with self._lock:
            for i in list(self._fields):  # make room first, so the peak never passes capacity
                if len(self._fields) + len(missing) <= self.capacity:
                    break
                if i not in indices:
                    del self._fields[i]
        if len(missing) > 1 and self.workers > 1:
            with ThreadPoolExecutor(min(self.workers, len(missing))) as pool:
                decoded = list(pool.map(self._decode, missing))
        else:
            decoded = [self._decode(i) for i in missing]
        with self._lock:
            for i, d in zip(missing, decoded):
                self._fields[i] = d
                self.loads += 1
            for i in indices:
                self._fields.move_to_end(i)
            self.peak = max(self.peak, len(self._fields))

    def get(self, i: int):
        if i not in self._fields:
            self.load([i])
        return self._fields[i]

    def __len__(self) -> int:
        return len(self._fields)


def _foreground_integral(y: np.ndarray) -> np.ndarray:
    """Integral image of an Otsu foreground mask of the target (mean over channels)."""
    from skimage.filters import threshold_otsu

    m = y.mean(axis=-1)
    step = max(1, m.size // 65536)
    sample = m.ravel()[::step]
    t = threshold_otsu(sample) if sample.max() > sample.min() else np.inf
    fg = (m > t).astype(np.float64)
    out = np.zeros((m.shape[0] + 1, m.shape[1] + 1))
    out[1:, 1:] = fg.cumsum(0).cumsum(1)
    return out


def _fg_fraction(integral: np.ndarray, y0: int, x0: int, ph: int, pw: int) -> float:
    s = (
        integral[y0 + ph, x0 + pw]
        - integral[y0, x0 + pw]
        - integral[y0 + ph, x0]
        + integral[y0, x0]
    )
    return float(s) / (ph * pw)


class PatchSampler:
    """Plans and yields the patches of one split, epoch after epoch.

    Args:
        spec: the dataset spec, normalisations fitted.
        split: "train" (random crops), "val" or "test" (non-overlapping tiles).
        patch_size: an int, ``(h, w)``, or None for whole fields / regions.
        patches_per_field: random crops per field per epoch (train); default: the field's area
            in patches (at least 1).
        foreground_weighted: draw 8 candidate crops and pick one with probability proportional
            to its fraction of foreground (Otsu on the target) + 0.02.
        seed: seed of the crop plan.
        cache_fields: keep decoded fields across epochs when they fit in `max_fields_in_memory`.
        max_fields_in_memory: the most fields held at once; default: as many as fit in 2 GiB.
        workers: decoding threads.
    """

    def __init__(
        self,
        spec: PairedDataset,
        split: str = "train",
        patch_size: int | tuple[int, int] | None = 256,
        *,
        patches_per_field: int | None = None,
        foreground_weighted: bool = False,
        seed: int = 0,
        cache_fields: bool = True,
        max_fields_in_memory: int | None = None,
        workers: int = 2,
    ):
        self.spec = spec
        self.split = split
        self.field_ids = [i for i, f in enumerate(spec.fields) if f.in_split(split)]
        if not self.field_ids:
            raise InputError(
                f"{spec.name}: no fields in split {split!r} (fields per split: "
                f"{ {s: spec.num_fields(s) for s in ('train', 'val', 'test')} }). Fix: give the "
                "spec a split with fields there (val_fraction / test_fields), or use another split."
            )
        if isinstance(patch_size, int):
            patch_size = (patch_size, patch_size)
        self.patch_size = patch_size
        self.patches_per_field = patches_per_field
        self.foreground_weighted = foreground_weighted
        self.seed = int(seed)
        self.epoch = 0
        if not _norm_ready(spec):
            spec.fit_normalization()
        # Field shapes without decoding twice: the first read also sizes the cache.
        first_x, first_y = spec.fields[self.field_ids[0]].read()
        field_bytes = (first_x.shape[-1] + first_y.shape[-1]) * first_x[..., 0].size * 4
        n = len(self.field_ids)
        if max_fields_in_memory is None:
            max_fields_in_memory = max(1, DEFAULT_CACHE_BYTES // max(field_bytes, 1))
        self.capacity = min(n, int(max_fields_in_memory))
        self.keep_all = cache_fields and self.capacity >= n
        self.cache = FieldCache(spec, self.capacity, workers)
        self.cache.foreground = foreground_weighted
        self.in_channels = first_x.shape[-1]
        self.out_channels = first_y.shape[-1]
        self._shapes: dict[int, tuple[int, int]] = {}
        if patch_size is not None:
            ph, pw = patch_size
            if ph > first_x.shape[0] or pw > first_x.shape[1]:
                raise InputError(
                    f"patch {ph}x{pw} is larger than the image {first_x.shape[0]}x"
                    f"{first_x.shape[1]} of field {spec.fields[self.field_ids[0]].name!r}. Fix: "
                    "use a smaller patch_size (or patch_size=None for whole images)."
                )

    def _rects(self, i: int) -> list[Rect]:
        if i not in self._shapes:
            self._shapes[i] = self.cache.get(i)[0].shape[:2]
        return self.spec.fields[i].rects(self.split, self._shapes[i])

    def _plan_field(self, i: int, rng: np.random.Generator) -> list[tuple[int, int, int, int, int]]:
        """Patches of field `i`: (field, y0, x0, h, w)."""
        rects = self._rects(i)
        name = self.spec.fields[i].name
        if self.patch_size is None:
            return [(i, r[0], r[2], r[1] - r[0], r[3] - r[2]) for r in rects]
        ph, pw = self.patch_size
        fits = [r for r in rects if r[1] - r[0] >= ph and r[3] - r[2] >= pw]
        if not fits:
            raise InputError(
                f"field {name!r}: patch {ph}x{pw} is larger than its {self.split} region(s) "
                f"{rects}. Fix: use a smaller patch_size."
            )
        if self.split != "train":  # deterministic, non-overlapping tiles
            return [
                (i, y, x, ph, pw)
                for r in fits
                for y in range(r[0], r[1] - ph + 1, ph)
                for x in range(r[2], r[3] - pw + 1, pw)
            ]
        counts = np.array([(r[1] - r[0] - ph + 1) * (r[3] - r[2] - pw + 1) for r in fits], float)
        n = self.patches_per_field or max(
            1, sum((r[1] - r[0]) * (r[3] - r[2]) for r in fits) // (ph * pw)
        )
        which = rng.choice(len(fits), size=n, p=counts / counts.sum())
        out = []
        for k in which:
            y0, y1, x0, x1 = fits[k]
            if self.foreground_weighted:
                fg = self.cache.get(i)[2]
                ys = rng.integers(y0, y1 - ph + 1, size=8)
                xs = rng.integers(x0, x1 - pw + 1, size=8)
                w = np.array([_fg_fraction(fg, a, b, ph, pw) for a, b in zip(ys, xs)]) + 0.02
                j = rng.choice(8, p=w / w.sum())
                out.append((i, int(ys[j]), int(xs[j]), ph, pw))
            else:
                out.append(
                    (
                        i,
                        int(rng.integers(y0, y1 - ph + 1)),
                        int(rng.integers(x0, x1 - pw + 1)),
                        ph,
                        pw,
                    )
                )
        return out

    def patches_per_epoch(self) -> int | None:
        """Patches per epoch when known without decoding any field, else None."""
        whole = all(self.spec.fields[i].regions is None for i in self.field_ids)
        if self.split == "train" and self.patch_size is not None and self.patches_per_field:
            return len(self.field_ids) * self.patches_per_field
        if self.patch_size is None and whole:
            return len(self.field_ids)
        return None

    def num_chunks(self) -> int:
        """Chunks per epoch: groups of at most `capacity` fields, planned and visited in turn."""
        return -(-len(self.field_ids) // self.capacity)

    def chunk_plan(self, epoch: int, chunk: int) -> list[tuple[int, int, int, int, int]]:
        """The patches ``(field, y0, x0, h, w)`` of one chunk of `epoch` (shuffled within it),
        with its fields loaded. A function of ``(seed, epoch, chunk)`` alone, so any chunk can be
        planned without planning the ones before it."""
        rng = np.random.default_rng([self.seed, epoch])
        ids = list(self.field_ids)
        train = self.split == "train"
        if train:
            ids = [ids[k] for k in rng.permutation(len(ids))]
        if chunk:
            rng = np.random.default_rng([self.seed, epoch, chunk])
        fields = ids[chunk * self.capacity : (chunk + 1) * self.capacity]
        self.cache.load(fields)
        patches = [p for i in fields for p in self._plan_field(i, rng)]
        if train:
            patches = [patches[k] for k in rng.permutation(len(patches))]
        return patches

    def epoch_plan(self, epoch: int) -> Iterator[list[tuple[int, int, int, int, int]]]:
        """The patches ``(field, y0, x0, h, w)`` of `epoch`, in chunks of at most `capacity`
        fields (shuffled within a chunk); lazy, so a chunk is planned when its fields are loaded."""
        for c in range(self.num_chunks()):
            yield self.chunk_plan(epoch, c)

    def patch_seed(self, epoch: int, chunk: int, k: int) -> np.ndarray:
        """The augmentation seed of the `k`-th patch of a chunk: int64 (2,)."""
        return np.array([self.seed * 1_000_003 + epoch, (chunk << 32) + k], np.int64)

    def start_epoch(self) -> int:
        """The epoch a new pass over the split draws (then the next pass draws the next one)."""
        epoch = self.epoch
        self.epoch += 1
        return epoch

    def crop(self, field: int, y0: int, x0: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """The input and target of one planned patch (decoding its field if it is not held)."""
        x, y, _ = self.cache.get(int(field))
        patch = x[y0 : y0 + h, x0 : x0 + w], y[y0 : y0 + h, x0 : x0 + w]
        return tuple(np.asarray(a, np.float32) for a in patch)  # what the dataset declares

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yields ``(x, y, seed)`` for one epoch: (h, w, Cin), (h, w, Cout) float32, int64 (2,)."""
        epoch = self.start_epoch()
        for c, chunk in enumerate(self.epoch_plan(epoch)):
            for k, patch in enumerate(chunk):
                yield (*self.crop(*patch), self.patch_seed(epoch, c, k))

    def dataset(self) -> tf.data.Dataset:
        """One pass (epoch) per iteration as a `tf.data.Dataset` of ``(x, y, seed)``.

        Built from `tf.numpy_function` calls (one per chunk plan, one per crop), not from
        `tf.data.Dataset.from_generator`: once a generator dataset has produced an element, every
        later training step in the process runs 2-3x slower on CPU
        (`benchmarks/bench_fit_input.py`). The calls run in order, so the stream is the one
        `iter(sampler)` yields.
        """
        h, w = self.patch_size if self.patch_size is not None else (None, None)
        cin, cout = self.in_channels, self.out_channels

        def plan(epoch, chunk):  # rows: seed (2), field, y0, x0, h, w
            patches = self.chunk_plan(epoch, chunk)
            rows = [(*self.patch_seed(epoch, chunk, k), *p) for k, p in enumerate(patches)]
            return np.array(rows, np.int64).reshape(-1, 7)

        def patch(row):
            x, y = tf.numpy_function(
                lambda r: self.crop(*r), [row[2:]], [tf.float32, tf.float32], stateful=True
            )
            return tf.ensure_shape(x, (h, w, cin)), tf.ensure_shape(y, (h, w, cout)), row[:2]

        def chunks(epoch):
            rows = tf.data.Dataset.range(self.num_chunks()).map(
                lambda c: tf.ensure_shape(
                    tf.numpy_function(plan, [epoch, c], tf.int64, stateful=True), (None, 7)
                )
            )
            return rows.flat_map(tf.data.Dataset.from_tensor_slices)

        start = tf.data.Dataset.range(1).map(
            lambda _: tf.numpy_function(
                lambda: np.int64(self.start_epoch()), [], tf.int64, stateful=True
            )
        )
        return start.flat_map(chunks).map(patch)


def _norm_ready(spec: PairedDataset) -> bool:
    return spec.input_norm.is_fitted and spec.target_norm.is_fitted


def make_dataset(
    spec: PairedDataset,
    split: str = "train",
    patch_size: int | tuple[int, int] | None = 256,
    batch_size: int = 4,
    patches_per_field: int | None = None,
    foreground_weighted: bool = False,
    augment: Augmentation | bool | None = None,
    seed: int = 0,
    cache_fields: bool = True,
    max_fields_in_memory: int | None = None,
    *,
    repeat: bool = False,
    drop_remainder: bool | None = None,
    workers: int = 2,
) -> tf.data.Dataset:
    """(input, target) float32 NHWC batches of normalised patches, ready for `model.fit`.

    Normalisations not yet fitted are fitted on the training pixels of `spec` first.

    Args:
        spec: the `PairedDataset`.
        split: "train", "val" or "test".
        patch_size: patch side (int or ``(h, w)``), or None for whole fields / regions.
        batch_size: patches per batch.
        patches_per_field: random crops per field per epoch (train only).
        foreground_weighted: favour crops with target signal (train only).
        augment: an `Augmentation`, True for the default one, False for none; default (None):
            flips + 90-degree rotations + mild input contrast / noise for "train", none otherwise.
        seed: seeds the crops and the augmentation; each epoch draws new crops, reproducibly.
        cache_fields: keep decoded fields in memory across epochs when they all fit.
        max_fields_in_memory: the most decoded fields held at once (default: what fits in 2 GiB).
        repeat: repeat forever (use with ``steps_per_epoch``).
        drop_remainder: drop the last partial batch (default: True for "train").
        workers: decoding threads.

    Returns:
        A `tf.data.Dataset` of ``(input, target)``, shapes (B, h, w, Cin) and (B, h, w, Cout).

    Example:
    >>> from vsgan.datasets import synthetic_cells
    >>> ds = make_dataset(synthetic_cells(4, size=64), patch_size=32, batch_size=2)
    >>> x, y = next(iter(ds))
    >>> tuple(x.shape), tuple(y.shape)
    ((2, 32, 32, 1), (2, 32, 32, 2))
    """
    sampler = PatchSampler(
        spec,
        split,
        patch_size,
        patches_per_field=patches_per_field,
        foreground_weighted=foreground_weighted,
        seed=seed,
        cache_fields=cache_fields,
        max_fields_in_memory=max_fields_in_memory,
        workers=workers,
    )
    if augment is None:
        augment = Augmentation() if split == "train" else False
    elif augment is True:
        augment = Augmentation()
    ds = sampler.dataset()
    if repeat:
        ds = ds.repeat()
    if augment:
        aug = augment
        ds = ds.map(
            lambda x, y, s: aug(x, y, s), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
    else:
        ds = ds.map(lambda x, y, s: (x, y))
    if drop_remainder is None:
        drop_remainder = split == "train"
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    n = sampler.patches_per_epoch()
    if n is not None and not repeat:  # a known length spares Keras' "ran out of data" warning
        ds = ds.apply(
            tf.data.experimental.assert_cardinality(
                n // batch_size if drop_remainder else -(-n // batch_size)
            )
        )
    ds = ds.prefetch(tf.data.AUTOTUNE)
    ds.sampler = sampler  # for inspection (memory use, plan); not part of tf.data
    return ds
