"""Keeps TensorFlow's native start-up noise off the terminal of CPU-only machines.

TensorFlow writes "Could not find cuda drivers", CPU-feature notes and "failed call to cuInit"
from C++ straight to file descriptor 2, before absl logging exists, so TF_CPP_MIN_LOG_LEVEL
cannot hide them. They alarm users of a healthy run. `install()` (called by `import vsgan`)
adds an import hook: whenever TensorFlow is first imported (directly, or through keras), the
import and the device discovery that triggers cuInit run with fd 2 captured; if either fails,
what was captured is shown. `VSGAN_VERBOSE_TF=1` turns the hook off.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import tempfile


@contextlib.contextmanager
def native_stderr_silenced():
    """Captures fd 2 for the block; re-emits the capture if the block raises."""
    if os.environ.get("VSGAN_VERBOSE_TF") == "1":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (some notebooks): nothing to silence
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        with native_stderr_silenced():
            self.inner.exec_module(module)
            module.config.list_physical_devices()  # the cuInit probe, while still captured


class _QuietFinder(importlib.abc.MetaPathFinder):
    done = False

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or self.done:
            return None
        self.done = True  # once (the list is not edited while the import system walks it)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install() -> None:
    """Silences the next first import of TensorFlow (a no-op once it is imported)."""
    if "tensorflow" in sys.modules or os.environ.get("VSGAN_VERBOSE_TF") == "1":
        return
    if not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
