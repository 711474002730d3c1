"""Microscopy data in: readers, paired specs, normalisation, splits, patches, augmentation."""

from vsgan.data.augment import Augmentation
from vsgan.data.normalize import Normalization
from vsgan.data.pipeline import FieldCache, PatchSampler, make_dataset
from vsgan.data.readers import channel_names, read_image
from vsgan.data.spec import Field, PairedDataset, Source
from vsgan.data.splits import check_disjoint, split_fields, split_regions

__all__ = [
    "Augmentation",
    "Field",
    "FieldCache",
    "Normalization",
    "PairedDataset",
    "PatchSampler",
    "Source",
    "channel_names",
    "check_disjoint",
    "make_dataset",
    "read_image",
    "split_fields",
    "split_regions",
]
