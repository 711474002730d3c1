"""vsgan's exception types: every error a user can cause names the problem and the fix."""


class VsganError(Exception):
    """Base class of every error vsgan raises on bad input."""


class InputError(VsganError, ValueError):
    """An image, array or argument has the wrong shape, dtype, channel count or values."""


class DataFileError(VsganError, OSError):
    """A file is missing, unreadable, corrupt or of an unsupported format."""


class ModelFileError(VsganError, OSError):
    """A model, weights or checkpoint file cannot be loaded safely or does not match."""


class ChecksumError(ModelFileError):
    """A downloaded or bundled file does not match its recorded sha256."""


class TrainingDiverged(VsganError, RuntimeError):
    """A loss became NaN or Inf (the step's update is skipped, then training stops)."""


class UnknownPresetError(VsganError, KeyError):
    """A preset name is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MissingExtraError(VsganError, ImportError):
    """An optional dependency is not installed; the message names the `pip install` to run."""
