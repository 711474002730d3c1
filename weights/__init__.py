"""Bundled preset weights and model cards (installed as the package ``vsgan.weights``)."""
