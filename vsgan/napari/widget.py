"""The napari "Virtual stain" widget: a model, image layers mapped to its inputs by name, go.

Pick a preset (`vsgan.zoo.list_pretrained`) or a `.keras` file; each input channel of the
model gets the image layer of the same name (editable); choose Monte-Carlo samples,
test-time augmentation and the tile size; **Stain** loads the model and runs
`vsgan.inference.stain.stain` in a worker thread (the viewer stays responsive, a progress bar
counts tiles) and adds `<target>_prediction` and `<target>_std` layers (and `<target>_lower`
/ `<target>_upper`, the calibrated interval, when the model is calibrated) with the input's
scale and position, coloured by stain. Running again replaces those layers' data.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from typing import Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from qtpy.QtCore import QObject, Signal, Slot

from vsgan.errors import InputError, VsganError
from vsgan.napari._compute import KERAS_FILE
from vsgan.napari.layers import contrast_limits, image_kwargs

NONE = "-"


def model_channels(choice: str, path: str | os.PathLike | None = None) -> tuple[list, list]:
    """(input channel names, output channel names) of a preset or `.keras` file, without
    loading the model (no TensorFlow): from the preset table or the file's `config.json`."""
    if choice != KERAS_FILE:
        from vsgan.zoo.presets import get_preset

        preset = get_preset(choice)
        return list(preset.input_channels), list(preset.output_channels)
    if not path or not os.path.isfile(path):
        raise InputError("choose a .keras file written by vsgan (model.save or `vsgan train`).")
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))["config"]
        return list(config["input_channels"]), list(config["output_channels"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise InputError(
            f"{path}: not a vsgan .keras model ({type(error).__name__}: {error}). Fix: give a "
            ".keras file written by vsgan."
        ) from None


def _key(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def match_layers(channels: list[str], layers: list[str]) -> dict[str, str | None]:
    """The image layer for each model input channel, by name: exact, then ignoring case and
    punctuation, then a unique layer containing the channel name; a one-channel model takes
    the only layer when nothing matches. Unmatched channels map to None.

    Example:
    >>> match_layers(["phase_z0", "phase_z1"], ["Phase Z1", "phase_z0", "dapi"])
    {'phase_z0': 'phase_z0', 'phase_z1': 'Phase Z1'}
    """
    found: dict[str, str | None] = {}
    for channel in channels:
        exact = [n for n in layers if n == channel]
        loose = [n for n in layers if _key(n) == _key(channel)]
        within = [n for n in layers if _key(channel) and _key(channel) in _key(n)]
        found[channel] = next((c[0] for c in (exact, loose, within) if len(c) == 1), None)
    if len(channels) == 1 and found[channels[0]] is None and len(layers) == 1:
        found[channels[0]] = layers[0]
    return found


class _Progress(QObject):
    """Carries (done, total) from the worker thread to the progress bar in the GUI thread."""

    tick = Signal(int, int)

    def __init__(self, bar: ProgressBar):
        super().__init__()
        self.bar = bar
        self.tick.connect(self.show)

    @Slot(int, int)
    def show(self, done: int, total: int) -> None:
        self.bar.max = max(total, 1)
        self.bar.value = done


def _stain_job(choice, path, raw, settings, progress: _Progress) -> dict[str, Any]:
    """Runs in the worker thread: stains here, or in a child process next to Mesa's LLVM."""
    from vsgan.napari import _compute

    progress.tick.emit(0, 1)
    run = _compute.compute_in_child if _compute.needs_child_process() else _compute.compute
    return run(choice, path, raw, settings, progress.tick.emit)


class StainWidget(Container):
    """The "Virtual stain" dock widget (napari > Plugins > vsgan > Virtual stain)."""

    def __init__(self, napari_viewer):
        from vsgan.zoo.presets import list_pretrained

        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.worker = None  # the running (or last) stain worker, for tests and scripts
        presets = list(list_pretrained())
        self.model = ComboBox(label="model", choices=[*presets, KERAS_FILE])
        self.model_file = FileEdit(label=".keras file", filter="*.keras", mode="r", visible=False)
        self.channels = Container(label="input channels", labels=True)
        self.samples = SpinBox(label="MC samples", value=8, min=1, max=256)
        self.tta = CheckBox(text="test-time augmentation (8 flips/rotations)", value=False)
        self.tile_size = SpinBox(label="tile size", value=512, min=32, max=8192, step=32)
        self.level = FloatSpinBox(  # used when the model is calibrated
            label="interval level", value=0.9, min=0.5, max=0.999, step=0.05
        )
        self.button = PushButton(text="Stain")
        self.progress = ProgressBar(label="progress", value=0, min=0, max=1)
        self.status = Label(value="")
        self.extend(
            [
                self.model,
                self.model_file,
                self.channels,
                self.samples,
                self.tta,
                self.tile_size,
                self.level,
                self.button,
                self.progress,
                self.status,
            ]
        )
        self._progress = _Progress(self.progress)
        self.model.changed.connect(self._model_changed)
        self.model_file.changed.connect(self._model_changed)
        self.button.clicked.connect(self.run)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.moved):
            event.connect(self._layers_changed)
        self.outputs: list[str] = []
        self._model_changed()

    # ------------------------------------------------------------ channel mapping
    def _image_layers(self) -> list[str]:
        from napari.layers import Image

        return [
            layer.name
            for layer in self.viewer.layers
            if isinstance(layer, Image) and not layer.rgb and layer.name not in self.outputs
        ]

    def _model_changed(self, *_) -> None:
        self.model_file.visible = self.model.value == KERAS_FILE
        self.channels.clear()
        self.outputs = []
        try:
            inputs, outputs = model_channels(self.model.value, self.model_file.value)
        except VsganError as error:
            self._say(str(error))
            return
        kinds = ("prediction", "std", "lower", "upper")
        self.outputs = [f"{t}_{k}" for t in outputs for k in kinds]
        names = self._image_layers()
        matched = match_layers(inputs, names)
        for channel in inputs:
            box = ComboBox(label=channel, choices=[NONE, *names])
            box.value = matched[channel] or NONE
            self.channels.append(box)
        missing = [c for c, n in matched.items() if n is None]
        self._say(
            f"no layer named like {', '.join(missing)}: choose one per channel."
            if missing
            else f"{len(inputs)} input channel(s) matched by name -> {', '.join(outputs)}."
        )

    def _layers_changed(self, *_) -> None:
        names = self._image_layers()
        fresh = match_layers([box.label for box in self.channels], names)
        for box in self.channels:
            current = box.value
            box.choices = [NONE, *names]
            box.value = current if current in names else (fresh[box.label] or NONE)

    @property
    def mapping(self) -> dict[str, str | None]:
        """Model input channel -> image layer name (None: not chosen)."""
        return {box.label: (None if box.value == NONE else box.value) for box in self.channels}

    # ------------------------------------------------------------------- staining
    def _gather(self) -> tuple[np.ndarray, tuple, tuple]:
        mapping = self.mapping
        if not mapping:
            raise InputError("choose a model first.")
        missing = [c for c, n in mapping.items() if n is None]
        if missing:
            raise InputError(f"no image layer chosen for input channel(s) {', '.join(missing)}.")
        planes, first = [], None
        for channel, name in mapping.items():
            layer = self.viewer.layers[name]
            data = layer.data[0] if layer.multiscale else layer.data
            plane = np.squeeze(np.asarray(data))
            if plane.ndim != 2:
                raise InputError(
                    f"layer {name!r} (for {channel}) has shape {plane.shape}: the widget stains "
                    "2-D fields. Fix: give one 2-D layer per input channel."
                )
            if planes and plane.shape != planes[0].shape:
                raise InputError(
                    f"layer {name!r} is {plane.shape} but {first.name!r} is {planes[0].shape}: "
                    "all input channels must have the same size."
                )
            first = first or layer
            planes.append(plane)
        return np.stack(planes, axis=-1), tuple(first.scale[-2:]), tuple(first.translate[-2:])

    def run(self) -> None:
        """Starts staining in a worker thread (returns at once)."""
        from napari.qt.threading import create_worker

        if self.worker is not None and self.worker.is_running:
            self._say("already staining: wait for it to finish.")
            return
        try:
            raw, scale, translate = self._gather()
        except VsganError as error:
            self._say(str(error), error=True)
            return
        settings = {
            "samples": int(self.samples.value),
            "tta": bool(self.tta.value),
            "tile_size": int(self.tile_size.value),
            "level": float(self.level.value),
        }
        choice, path = self.model.value, self.model_file.value
        job = (choice, path, raw, settings, self._progress)
        self.worker = create_worker(_stain_job, *job, _start_thread=False)
        self.worker.returned.connect(lambda out: self._show(out, scale, translate))
        self.worker.errored.connect(lambda error: self._say(f"staining failed: {error}", True))
        self.worker.finished.connect(lambda: setattr(self.button, "enabled", True))
        self.button.enabled = False
        self.progress.value = 0
        self._say(f"staining {raw.shape[0]}x{raw.shape[1]} px ...")
        self.worker.start()

    def _show(self, out: dict[str, Any], scale: tuple, translate: tuple) -> None:
        for name, plane in out["planes"].items():
            shown = name.endswith("_prediction")  # spread and bounds are a click away
            if name in self.viewer.layers:
                layer = self.viewer.layers[name]
                layer.data = plane
                layer.contrast_limits = image_kwargs(name, plane)["contrast_limits"]
                layer.scale, layer.translate = scale, translate
            else:
                style = image_kwargs(name, plane, scale=scale, translate=translate, visible=shown)
                self.viewer.add_image(plane, **style)
        self._say(f"stained ({out['tiles']} tile(s)): {', '.join(out['planes'])}.{out['note']}")

    def _say(self, message: str, error: bool = False) -> None:
        self.status.value = message
        if error:
            from napari.utils.notifications import show_error

            show_error(message)


__all__ = ["StainWidget", "contrast_limits", "match_layers", "model_channels"]
