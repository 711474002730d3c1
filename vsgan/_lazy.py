"""PEP 562 lazy attributes for package `__init__` files: heavy modules load on first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def attributes(package: str, names: dict[str, str]) -> tuple[Callable, Callable]:
    """`(__getattr__, __dir__)` for `package` that import `names[attr]` on first access.

    Args:
        package: the package's `__name__`.
        names: attribute -> module (relative names start with ".").

    Returns:
        the two module-level functions to assign in the package's `__init__`.
    """

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(names[name], package)
        return module if module.__name__.endswith("." + name) else getattr(module, name)

    def __dir__():
        return sorted(names)

    return __getattr__, __dir__
