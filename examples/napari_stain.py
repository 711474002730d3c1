"""Stain the sample field in napari with the "Virtual stain" widget, as a user would click it.

    pip install "vsgan[napari]"
    python examples/napari_stain.py                      # opens napari, stains, stays open
    python examples/napari_stain.py --screenshot shot.png  # saves the viewer, then quits

Without a screen, run it under a virtual display: `xvfb-run -a python examples/napari_stain.py
--screenshot shot.png`.

The sample is the held-out ISL quadrant when the data is found ($VSGAN_DATA), else synthetic
cells; the model is the `isl-nuclei` preset for ISL (a `.keras` file for anything else).
"""

import argparse

import napari


def _register_plugin() -> None:
    """Registers vsgan's manifest when running from a source checkout not pip-installed."""
    from pathlib import Path

    from npe2 import PluginManager, PluginManifest

    import vsgan.napari

    manager = PluginManager.instance()
    if "vsgan" not in {m.name for m in manager.iter_manifests()}:
        manager.register(
            PluginManifest.from_file(Path(vsgan.napari.__file__).parent / "napari.yaml")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="isl-nuclei", help="preset name or .keras file")
    parser.add_argument("--samples", type=int, default=8, help="Monte-Carlo samples")
    parser.add_argument("--screenshot", help="save the viewer to this PNG and quit")
    args = parser.parse_args()

    _register_plugin()
    viewer = napari.Viewer(title="vsgan: virtual stain")
    viewer.open_sample("vsgan", "field")
    _, widget = viewer.window.add_plugin_dock_widget("vsgan", "Virtual stain")
    if args.model.endswith(".keras"):
        widget.model.value = "(.keras file)"
        widget.model_file.value = args.model
    else:
        widget.model.value = args.model
    widget.samples.value = args.samples

    def show(*_):
        # A 2 x 2 grid: one input plane, the measured stain (when the sample has it), the
        # predicted stain and its Monte-Carlo spread.
        targets = [layer.name for layer in viewer.layers if layer.name.endswith("_prediction")]
        inputs = list(widget.mapping.values())
        keep = [inputs[len(inputs) // 2]]
        keep += [t.removesuffix("_prediction") for t in targets]  # measured, if present
        keep += targets + [t.replace("_prediction", "_std") for t in targets]
        for layer in viewer.layers:
            layer.visible = layer.name in keep
        order = [viewer.layers.index(n) for n in keep if n in viewer.layers]
        for i, index in enumerate(order):  # top-left to bottom-right in `keep` order
            viewer.layers.move(viewer.layers.index(viewer.layers[index].name), i)
        viewer.grid.enabled, viewer.grid.shape = True, (2, 2)
        viewer.window.resize(1600, 1000)
        viewer.reset_view()
        print(widget.status.value, flush=True)
        if args.screenshot:
            viewer.screenshot(args.screenshot, canvas_only=False)
            print(f"screenshot: {args.screenshot}", flush=True)
            viewer.close()

    widget.run()
    widget.worker.finished.connect(show)
    napari.run()


if __name__ == "__main__":
    main()
