"""Paired training data: specs, normalisation (the model's preprocessor), splits, patches,
augmentation and the tf.data pipeline. Reads files through `vsgan.io`; knows nothing of models."""

from vsgan import _lazy

__getattr__, __dir__ = _lazy.attributes(
    __name__,
    {
        "Augmentation": ".augment",
        "Normalization": ".normalize",
        "StainPreprocessor": ".normalize",
        "FieldCache": ".pipeline",
        "PatchSampler": ".pipeline",
        "make_dataset": ".pipeline",
        "Field": ".spec",
        "PairedDataset": ".spec",
        "Source": ".spec",
        "check_disjoint": ".splits",
        "split_fields": ".splits",
        "split_regions": ".splits",
    },
)
