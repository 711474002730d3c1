"""Silences TensorFlow's native start-up banner (oneDNN, CUDA, CPU-feature lines).

TensorFlow writes them from C++ straight to file descriptor 2, ignoring
TF_CPP_MIN_LOG_LEVEL for messages logged before absl is initialised. They are noise for
users of the CLI and the library; if the import fails, what was written is shown.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def native_stderr_silenced():
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
