"""napari plugin (extra `vsgan[napari]`): "Virtual stain" widget, OME-TIFF reader, sample data.

Declared to napari by the npe2 manifest `napari.yaml` (entry point `napari.manifest`); nothing
here is imported by `import vsgan`. OME-Zarr outputs open with napari-ome-zarr.
"""
