"""The staining the widget runs: in its worker thread, or in a child process when needed.

Kept free of Qt so a spawned child process imports only vsgan and TensorFlow. Why a child
process: Mesa's OpenGL (software rendering, and AMD's radeonsi) loads its own libLLVM, and
TensorFlow, imported after it into the same process, binds its LLVM start-up code to Mesa's
copy and crashes. So when a libLLVM is already mapped and TensorFlow is not yet imported,
the widget stains in one long-lived spawned process (the model stays loaded between runs).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from vsgan.errors import VsganError

KERAS_FILE = "(.keras file)"

_CACHE: dict = {}  # the loaded model, per process
_QUEUE = None  # progress queue of a child process


def needs_child_process() -> bool:
    """True when importing TensorFlow here would crash next to Mesa's libLLVM."""
    if os.environ.get("VSGAN_NAPARI_PROCESS"):
        return os.environ["VSGAN_NAPARI_PROCESS"] not in ("0", "")
    if "tensorflow" in sys.modules:
        return False
    try:
        with open("/proc/self/maps") as maps:
            return "libLLVM" in maps.read()
    except OSError:  # not Linux
        return False


def _load_model(choice: str, path):
    from vsgan.zoo.presets import load_pretrained

    source = os.fspath(path) if choice == KERAS_FILE else choice
    stamp = os.path.getmtime(source) if choice == KERAS_FILE else None
    if _CACHE.get("key") != (source, stamp):
        _CACHE.clear()
        _CACHE.update(key=(source, stamp), model=load_pretrained(source))
    return _CACHE["model"]


def compute(
    choice: str, path, raw, settings: dict[str, Any], progress: Callable[[int, int], None]
) -> dict[str, Any]:
    """Loads the model (cached), stains `raw`, adds the interval when calibrated.

    Returns {"planes": {layer name: (H, W) array}, "tiles": n, "note": text}.
    """
    from vsgan.inference.stain import stain

    model = _load_model(choice, path)
    result = stain(
        model,
        raw,
        samples=settings["samples"],
        tta=settings["tta"],
        tile_size=settings["tile_size"],
        callback=progress,
    )
    targets = list(model.output_channels)
    planes = {f"{t}_prediction": result.mean[..., i] for i, t in enumerate(targets)}
    if result.std is not None:
        planes.update({f"{t}_std": result.std[..., i] for i, t in enumerate(targets)})
    note = ""
    if hasattr(result, "interval") and getattr(result, "calibration", None) is not None:
        try:
            lower, upper = result.interval(settings["level"])
        except VsganError as error:  # e.g. sampled unlike at calibration
            note = f" No interval: {error}"
        else:
            for i, t in enumerate(targets):
                planes[f"{t}_lower"], planes[f"{t}_upper"] = lower[..., i], upper[..., i]
    return {"planes": planes, "tiles": result.tiles, "note": note}


def _child_init(queue) -> None:
    global _QUEUE
    _QUEUE = queue


def _child_compute(choice, path, raw, settings):
    return compute(choice, path, raw, settings, lambda done, total: _QUEUE.put((done, total)))


_POOL = None


def compute_in_child(choice, path, raw, settings, progress) -> dict[str, Any]:
    """`compute` in the long-lived spawned process, relaying its progress to `progress`."""
    import multiprocessing
    import queue as queues
    from concurrent.futures import ProcessPoolExecutor

    global _POOL
    if _POOL is None:
        context = multiprocessing.get_context("spawn")
        channel = context.Queue()
        pool = ProcessPoolExecutor(1, context, initializer=_child_init, initargs=(channel,))
        _POOL = (pool, channel)
    pool, channel = _POOL
    future = pool.submit(_child_compute, choice, path, raw, settings)
    while True:
        try:
            progress(*channel.get(timeout=0.1))
        except queues.Empty:
            if future.done():
                break
    return future.result()
