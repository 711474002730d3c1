"""Training around `Pix2PixHD.fit`: the schedules and crash-safe callbacks, recipes, and
`train`, which runs a recipe into a resumable run folder."""

from vsgan import _lazy

__getattr__, __dir__ = _lazy.attributes(
    __name__,
    {
        "LinearDecay": ".callbacks",
        "EnhancerSchedule": ".callbacks",
        "NanGuard": ".callbacks",
        "AtomicCheckpoint": ".callbacks",
        "AtomicBackupAndRestore": ".callbacks",
        "schedules": ".callbacks",
        "Recipe": ".recipes",
        "get_recipe": ".recipes",
        "train": ".recipes",
    },
)
