"""Files in and out: readers, writers, OME-Zarr, and the file helpers (atomic writes, sha256,
size limits). Imports nothing of vsgan but `vsgan.errors`; never TensorFlow."""

from vsgan import _lazy

__getattr__, __dir__ = _lazy.attributes(
    __name__,
    {
        "read_image": ".readers",
        "channel_names": ".readers",
        "write_stain": ".writers",
        "atomic_path": ".files",
        "sha256": ".files",
        "ome_zarr": ".ome_zarr",
        "readers": ".readers",
        "writers": ".writers",
        "files": ".files",
    },
)
